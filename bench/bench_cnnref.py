"""cnnref (numpy) against torch on CPU: conv2d and pooling, forward + backward.

Both sides use float64 NCHW arrays of the same values, measured in the same run; each figure
is the best of several repeats, and the table gives cnnref's time as a multiple of torch's
(goal: conv2d within 2x, max-pool within 3x).

    python -m bench.bench_cnnref            # full run, rewrites its section of BENCHMARKS.md
    python -m bench.bench_cnnref --quick    # a fast smoke run (fewer repeats), same output
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench._report import machine, write_section
from cnnref.layers import conv2d_backward, conv2d_forward
from cnnref.pooling import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)

GOALS = {"conv2d": 2.0, "maxpool2d": 3.0, "avgpool2d": None}


def best_time(fn: Callable[[], object], *, repeats: int, min_time: float) -> float:
    """Best wall time of one call of ``fn`` over ``repeats`` rounds (each round loops until
    ``min_time`` seconds have passed, to time short calls reliably)."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / calls)
    return best


def conv_pair(n: int, c: int, f: int, size: int, k: int, stride: int, padding: int):
    rng = np.random.default_rng(0)
    x, w, b = (
        rng.standard_normal((n, c, size, size)),
        rng.standard_normal((f, c, k, k)),
        rng.standard_normal(f),
    )
    out, _ = conv2d_forward(x, w, b, stride=stride, padding=padding)
    dout = rng.standard_normal(out.shape)

    def ours():
        _, cache = conv2d_forward(x, w, b, stride=stride, padding=padding)
        return conv2d_backward(dout, cache)

    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    dt = torch.tensor(dout)

    def theirs():
        out_t = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
        return torch.autograd.grad(out_t, (xt, wt, bt), dt)

    return ours, theirs


def pool_pair(kind: str, n: int, c: int, size: int, pool: int, stride: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, size, size))
    forward, backward, torch_fn = {
        "maxpool2d": (maxpool2d_forward, maxpool2d_backward, F.max_pool2d),
        "avgpool2d": (avgpool2d_forward, avgpool2d_backward, F.avg_pool2d),
    }[kind]
    out, _ = forward(x, pool_size=pool, stride=stride)
    dout = rng.standard_normal(out.shape)

    def ours():
        _, cache = forward(x, pool_size=pool, stride=stride)
        return backward(dout, cache)

    xt, dt = torch.tensor(x, requires_grad=True), torch.tensor(dout)

    def theirs():
        return torch.autograd.grad(torch_fn(xt, pool, stride), xt, dt)

    return ours, theirs


def cases():
    for n, c, f in ((8, 3, 16), (8, 16, 16), (64, 64, 64)):
        yield "conv2d", f"N={n} C={c} F={f} 32x32, 3x3 s1 p1", conv_pair(n, c, f, 32, 3, 1, 1)
    yield "conv2d", "N=8 C=16 F=32 32x32, 5x5 s2 p2", conv_pair(8, 16, 32, 32, 5, 2, 2)
    for kind in ("maxpool2d", "avgpool2d"):
        for n, c in ((8, 3), (8, 16), (64, 64)):
            yield kind, f"N={n} C={c} 32x32, 2x2 s2", pool_pair(kind, n, c, 32, 2, 2)
        yield kind, "N=8 C=16 32x32, 3x3 s1 (overlapping)", pool_pair(kind, 8, 16, 32, 3, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    args = parser.parse_args(argv)
    repeats, min_time = (2, 0.05) if args.quick else (7, 0.3)
    rows = []
    for kind, label, (ours, theirs) in cases():
        t_ours = best_time(ours, repeats=repeats, min_time=min_time)
        t_torch = best_time(theirs, repeats=repeats, min_time=min_time)
        ratio = t_ours / t_torch
        goal = GOALS[kind]
        verdict = (
            "-"
            if goal is None
            else ("met" if ratio <= goal else f"missed ({ratio / goal:.1f}x over)")
        )
        rows.append((kind, label, t_ours * 1e3, t_torch * 1e3, ratio, goal, verdict))
        print(
            f"{kind:10s} {label:40s} cnnref/torch = {ratio:5.2f}  "
            f"({t_ours * 1e3:.2f} ms vs {t_torch * 1e3:.2f} ms)"
        )
    lines = [
        "## cnnref (numpy) vs torch, CPU, float64, forward + backward",
        "",
        f"Machine: {machine()}." + (" Quick mode (fewer repeats)." if args.quick else ""),
        "",
        "| layer | case | cnnref / torch | goal | |",
        "|---|---|---|---|---|",
    ]
    for kind, label, _, _, ratio, goal, verdict in rows:
        goal_text = "" if goal is None else f"<= {goal:g}x"
        lines.append(f"| {kind} | {label} | {ratio:.2f}x | {goal_text} | {verdict} |")
    lines += [
        "",
        "Ratio = best-of-repeats time of cnnref's forward+backward over torch's "
        "(`F.conv2d`/`F.max_pool2d`/`F.avg_pool2d` + `torch.autograd.grad`) on the same data.",
        "",
        "Regenerate: `python -m bench.bench_cnnref`",
    ]
    path = write_section("cnnref", "\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
