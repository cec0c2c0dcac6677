"""The exercise specs: numbering, seeding, the hard cases, and the expected outputs against
PyTorch (the oracle for the numpy reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from grading_support import NUMPY_EXERCISES, numpy_specs

from grader import engine, registry

SEEDS = (0, 1, 2026, 987654)


def _prepared(name: str, seed: int) -> engine.PreparedExercise:
    return engine.prepare(registry.get(name), seed)


def test_every_numpy_exercise_is_registered_in_lecture_order():
    names = registry.names()
    assert all(n in names for n in NUMPY_EXERCISES)
    positions = [names.index(n) for n in NUMPY_EXERCISES]
    assert positions == sorted(positions)
    numbers = [tuple(map(int, s.number.split("."))) for s in numpy_specs()]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert numbers[0] == (1, 1)


@pytest.mark.parametrize("spec", numpy_specs(), ids=lambda s: s.name)
def test_spec_is_complete(spec):
    assert spec.points > 0
    assert spec.reference_function is not None and spec.reference_function.__name__ == spec.function
    assert len(spec.mistakes) >= 2
    assert len({m.name for m in spec.mistakes}) == len(spec.mistakes)
    prepared = engine.prepare(spec, 2026)
    assert 4 <= len(prepared.cases) <= 6
    assert all(c.label for c in prepared.cases), "every case says what makes it hard"
    assert all(engine.CASE_LABEL not in c.inputs for c in prepared.cases)


@pytest.mark.parametrize("name", NUMPY_EXERCISES)
def test_same_seed_same_cases_other_seed_other_cases(name):
    def fingerprint(p):
        return [
            {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in c.inputs.items()}
            for c in p.cases
        ]

    a, b = _prepared(name, 11), _prepared(name, 11)
    assert fingerprint(a) == fingerprint(b)
    assert any(fingerprint(_prepared(name, s)) != fingerprint(a) for s in (12, 13, 14))


def test_exercises_draw_from_independent_generators():
    r1 = engine.exercise_rng(5, "conv2d_forward").standard_normal(3)
    r2 = engine.exercise_rng(5, "conv2d_backward").standard_normal(3)
    assert not np.allclose(r1, r2)
    assert engine.stable_hash("conv2d_forward") == engine.stable_hash("conv2d_forward")


# ----------------------------------------------------------------------------- hard cases


@pytest.mark.parametrize("seed", SEEDS)
def test_output_size_has_a_case_where_floor_and_ceil_differ(seed):
    cases = _prepared("conv_output_size", seed).cases
    differ = [
        c
        for c in cases
        if not isinstance(c.inputs.get("padding", 0), str)
        and (c.inputs["n_in"] + 2 * c.inputs.get("padding", 0) - c.inputs["kernel_size"])
        % c.inputs.get("stride", 1)
    ]
    assert differ
    assert any(c.inputs.get("dilation", 1) > 1 for c in cases)


@pytest.mark.parametrize("name", ["conv2d_forward", "conv2d_backward"])
@pytest.mark.parametrize("seed", SEEDS)
def test_convolution_cases_cover_padding_dilation_batch_of_one_non_square(name, seed):
    cases = [c.inputs for c in _prepared(name, seed).cases]
    assert any(c["padding"] > 0 for c in cases)
    assert any(c["dilation"] > 1 for c in cases)
    assert any(c["stride"] > 1 for c in cases)
    assert any(c["x"].shape[0] == 1 for c in cases)
    assert any(c["x"].shape[2] != c["x"].shape[3] for c in cases)
    assert any(c["w"].shape[2] != c["w"].shape[3] for c in cases)


def _has_tie(x: np.ndarray, pool: int, stride: int) -> bool:
    for i in range(0, x.shape[2] - pool + 1, stride):
        for j in range(0, x.shape[3] - pool + 1, stride):
            win = x[:, :, i : i + pool, j : j + pool].reshape(*x.shape[:2], -1)
            if ((win == win.max(axis=-1, keepdims=True)).sum(axis=-1) > 1).any():
                return True
    return False


@pytest.mark.parametrize("name", ["maxpool2d_forward", "maxpool2d_backward"])
@pytest.mark.parametrize("seed", SEEDS)
def test_pooling_cases_cover_ties_overlap_default_stride_batch_of_one(name, seed):
    cases = [c.inputs for c in _prepared(name, seed).cases]
    pairs = [(c.get("stride", c["pool_size"]), c) for c in cases]
    assert any(s < c["pool_size"] for s, c in pairs)  # overlapping windows
    assert any(_has_tie(c["x"], c["pool_size"], s) for s, c in pairs)
    assert any(_has_tie(c["x"], c["pool_size"], s) and s < c["pool_size"] for s, c in pairs)
    assert any("stride" not in c for c in cases)  # stride=None means the pool size
    assert any(c["x"].shape[0] == 1 for c in cases)
    assert any(c["x"].shape[2] != c["x"].shape[3] for c in cases)


def test_pooling_includes_the_lecture_example():
    case = _prepared("maxpool2d_backward", 0).cases[0]
    expected = np.array(
        [[0, 0, 4, 0, 0], [2, 0, 0, 0, 0], [0, 0, 6, 0, 0], [0, 0, 0, 0, 0], [0, 8, 0, 0, 1]],
        dtype=float,
    )
    # the lecture: 9 gets 1+1, 8 gets 3+1, 6 gets 4+2, 7 at (4,1) gets 6+2, 7 at (4,4) gets 1
    np.testing.assert_array_equal(case.expected["dx"][0, 0], expected)


# ----------------------------------------------------------------------------- torch oracle


@pytest.mark.parametrize("seed", SEEDS)
def test_conv_expected_outputs_agree_with_torch(seed):
    for case in _prepared("conv2d_backward", seed).cases:
        c = case.inputs
        x = torch.tensor(c["x"], requires_grad=True)
        w = torch.tensor(c["w"], requires_grad=True)
        b = torch.tensor(c["b"], requires_grad=True)
        out = F.conv2d(x, w, b, stride=c["stride"], padding=c["padding"], dilation=c["dilation"])
        out.backward(torch.tensor(c["dout"]))
        np.testing.assert_allclose(case.expected["dx"], x.grad.numpy(), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(case.expected["dw"], w.grad.numpy(), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(case.expected["db"], b.grad.numpy(), rtol=1e-9, atol=1e-10)
    for case in _prepared("conv2d_forward", seed).cases:
        c = case.inputs
        ref = F.conv2d(
            torch.tensor(c["x"]),
            torch.tensor(c["w"]),
            torch.tensor(c["b"]),
            stride=c["stride"],
            padding=c["padding"],
            dilation=c["dilation"],
        )
        np.testing.assert_allclose(case.expected["out"], ref.numpy(), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_dense_expected_outputs_agree_with_torch(seed):
    for case in _prepared("dense_backward", seed).cases:
        c = case.inputs
        x = torch.tensor(c["x"], requires_grad=True)
        w = torch.tensor(c["w"], requires_grad=True)
        b = torch.tensor(c["b"], requires_grad=True)
        (x.reshape(x.shape[0], -1) @ w + b).backward(torch.tensor(c["dout"]))
        for name, t in (("dx", x), ("dw", w), ("db", b)):
            np.testing.assert_allclose(case.expected[name], t.grad.numpy(), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_maxpool_expected_outputs_agree_with_torch(seed):
    for case in _prepared("maxpool2d_backward", seed).cases:
        c = case.inputs
        x = torch.tensor(c["x"], requires_grad=True)
        out = F.max_pool2d(x, c["pool_size"], stride=c.get("stride"))
        out.backward(torch.tensor(c["dout"]))
        np.testing.assert_array_equal(case.expected["dx"], x.grad.numpy())
    for case in _prepared("maxpool2d_forward", seed).cases:
        c = case.inputs
        out = F.max_pool2d(torch.tensor(c["x"]), c["pool_size"], stride=c.get("stride"))
        np.testing.assert_array_equal(case.expected["out"], out.numpy())


@pytest.mark.parametrize("seed", SEEDS)
def test_output_size_and_counts_agree_with_torch(seed):
    for case in _prepared("conv_output_size", seed).cases:
        c = dict(case.inputs)
        if isinstance(c.get("padding"), str):
            want = math.ceil(c["n_in"] / c.get("stride", 1))
        else:
            conv = torch.nn.Conv2d(
                1,
                1,
                c["kernel_size"],
                stride=c.get("stride", 1),
                padding=c.get("padding", 0),
                dilation=c.get("dilation", 1),
                device="meta",
            )
            want = conv(torch.empty(1, 1, c["n_in"], 1 + 2 * 0 + 40, device="meta")).shape[2]
        assert int(case.expected["out"]) == want
    for case in _prepared("conv2d_params", seed).cases:
        c = case.inputs
        layer = torch.nn.Conv2d(
            c["in_channels"],
            c["out_channels"],
            c["kernel_size"],
            bias=c["bias"],
            groups=c["groups"],
            device="meta",
        )
        assert int(case.expected["out"]) == sum(p.numel() for p in layer.parameters())
    for case in _prepared("depthwise_separable_params", seed).cases:
        c = case.inputs
        bias = c.get("bias", True)
        dw = torch.nn.Conv2d(
            c["in_channels"],
            c["in_channels"],
            c["kernel_size"],
            groups=c["in_channels"],
            bias=bias,
            device="meta",
        )
        pw = torch.nn.Conv2d(c["in_channels"], c["out_channels"], 1, bias=bias, device="meta")
        total = sum(p.numel() for m in (dw, pw) for p in m.parameters())
        assert int(case.expected["out"]) == total


def _receptive_by_gradient(table: np.ndarray, size: int) -> tuple[int, float]:
    """rf and start of the last layer's first unit, from the input gradient's support."""
    x = torch.zeros(1, 1, size, 1, dtype=torch.float64, requires_grad=True)
    h, n = x, size
    for kind, k, s, p, d in table.tolist():
        if kind == 1:
            h = F.avg_pool2d(h, (k, 1), stride=(s or k, 1))  # same geometry, every tap used
            n = (n - k) // (s or k) + 1
            continue
        k_eff = d * (k - 1) + 1
        if p == -1:
            total = max((-(-n // s) - 1) * s + k_eff - n, 0)
            before, after = total // 2, total - total // 2
        else:
            before = after = 0 if p == -2 else p
        h = F.pad(h, (0, 0, before, after))
        h = F.conv2d(h, torch.ones(1, 1, k, 1, dtype=torch.float64), stride=(s, 1), dilation=(d, 1))
        n = (n + before + after - k_eff) // s + 1
    h[0, 0, 0, 0].backward()
    support = torch.nonzero(x.grad[0, 0, :, 0]).flatten().tolist()
    return support, n


@pytest.mark.parametrize("seed", SEEDS)
def test_receptive_field_agrees_with_torch_gradients(seed):
    for case in _prepared("receptive_field", seed).cases:
        c = case.inputs
        support, n = _receptive_by_gradient(c["layers"], c["input_size"])
        assert int(case.expected["n_out"][-1]) == n
        rf, start = int(case.expected["rf"][-1]), float(case.expected["start"][-1])
        # the support is the part of [start - (rf-1)/2, start + (rf-1)/2] inside the input
        lo, hi = start - (rf - 1) / 2, start + (rf - 1) / 2
        assert support[0] == max(0, math.ceil(lo)) and support[-1] == min(
            c["input_size"] - 1, math.floor(hi)
        )
