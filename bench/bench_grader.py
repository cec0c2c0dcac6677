"""What grading one submission costs, and what the sandbox's isolation adds.

Grades every non-training exercise of one submission (the generated ``solutions/``, which
answer the numeric questions too; the student code itself is fast, vectorized numpy) three
ways, in the same run:

- **sandbox, cold**: ``cnnlab grade`` as a student runs it (fork server started per run);
- **sandbox, warm**: one running sandbox reused (what a batch does per submission);
- **in-process** (UNSAFE, benchmark only): the same harnesses and checks with the student code
  imported into the grader's process.

It also times a trivial exercise (``dense_params``, 4 scalar cases) repeatedly in a warm
sandbox and in-process: the difference is the per-exercise child overhead.

Run: ``python -m bench.bench_grader`` (``--quick`` for a smoke run); writes its section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench._report import machine, write_section
from grader import engine, registry
from grader.exercises.questions import problem_seed_of
from grader.sandbox.runner import Sandbox
from grader.submission import load_submission

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (a smoke run)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 5
    overhead_repeats = 5 if args.quick else 30

    specs = [s for s in registry.all_specs() if "training" not in s.tags]
    if not (SOLUTIONS / "layers.py").is_file():
        raise SystemExit("no solutions/ to grade: run `cnnlab generate` first")
    submission = load_submission(SOLUTIONS)
    problem_seed = problem_seed_of(submission, default=args.seed)
    prep_times = _timed(
        lambda: engine.prepare_all(specs, args.seed, problem_seed=problem_seed), repeats
    )
    prepared = engine.prepare_all(specs, args.seed, problem_seed=problem_seed)

    def grade_cold():
        return engine.grade_prepared(submission, prepared, seed=args.seed)

    def grade_in_process():
        return engine.grade_prepared(submission, prepared, seed=args.seed, in_process=True)

    results = {}
    cold = _timed(lambda: results.setdefault("cold", grade_cold()), repeats)
    with Sandbox() as sandbox:
        sandbox.start()
        warm = _timed(
            lambda: results.setdefault(
                "warm",
                engine.grade_prepared(submission, prepared, seed=args.seed, sandbox=sandbox),
            ),
            repeats,
        )
        trivial = [p for p in prepared if getattr(p, "name", "") == "dense_params"]
        child = _timed(
            lambda: engine.run_exercise(sandbox, submission, trivial[0]), overhead_repeats
        )
    inproc = _timed(lambda: results.setdefault("inproc", grade_in_process()), repeats)
    runner = engine.InProcessRunner()
    inproc_trivial = _timed(
        lambda: engine.run_exercise(runner, submission, trivial[0]), overhead_repeats
    )

    for key, result in results.items():
        failed = [r.name for r in result.exercises if not r.passed]
        if failed:
            raise SystemExit(f"{key}: solutions/ did not pass {failed}: the benchmark is void")

    n = len(prepared)
    med = statistics.median
    per_child = med(child) - med(inproc_trivial)
    rows = [
        ("prepare (reference, parent)", med(prep_times), None),
        ("sandbox, cold (fork server started)", med(cold), med(cold) / med(inproc)),
        ("sandbox, warm (server reused)", med(warm), med(warm) / med(inproc)),
        ("in-process (unsafe, for comparison)", med(inproc), 1.0),
    ]
    lines = [
        f"Grading all {n} non-training exercises of one submission (the generated solutions/), "
        f"seed {args.seed}, median of {repeats} run(s). Goal: at most 5 s.",
        "",
        "| what | wall time | vs in-process |",
        "|---|---:|---:|",
    ]
    for label, seconds, ratio in rows:
        lines.append(f"| {label} | {seconds:.3f} s | {'' if ratio is None else f'{ratio:.1f}x'} |")
    lines += [
        "",
        f"Per-exercise child overhead (`dense_params`, 4 scalar cases, median of "
        f"{overhead_repeats}): {med(child) * 1000:.1f} ms in a warm sandbox vs "
        f"{med(inproc_trivial) * 1000:.2f} ms in-process, i.e. about {per_child * 1000:.1f} ms "
        f"per (submission, exercise) is the cost of a fresh isolated child.",
        "",
        f"Goal met: {'yes' if med(cold) <= 5.0 else 'NO'} (cold sandbox {med(cold):.2f} s).",
        "",
        f"Machine: {machine()}.",
        "",
        "Regenerate: `python -m bench.bench_grader`",
    ]
    body = "## Grading one submission\n\n" + "\n".join(lines)
    write_section("grader", body)
    print(body)
    return body


if __name__ == "__main__":
    main()
