"""The average-pooling exercises: PyTorch as the oracle for the reference, the self-check, and
grading through cnnlab's sandbox (solution, each known mistake, the unfilled stub).

Run with ``python -m pytest`` in this folder (installed or not), or as part of cnnlab's suite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from avgpool_plugin import reference
from avgpool_plugin.spec import AVGPOOL2D_BACKWARD, AVGPOOL2D_FORWARD, EXERCISES

from grader import registry
from grader.authoring import check_spec, grade_submission, mistake_report, render_module
from grader.sandbox.runner import Sandbox

CONFIGS = [  # (shape, pool, stride): tiling, overlap, default stride with a border, gaps
    ((2, 3, 4, 6), 2, 2),
    ((1, 2, 5, 6), 3, 1),
    ((2, 2, 5, 7), 2, None),
    ((1, 3, 7, 8), 3, 2),
    ((2, 1, 7, 8), 2, 3),
]


@pytest.mark.parametrize("shape, pool, stride", CONFIGS)
def test_the_reference_agrees_with_torch(shape, pool, stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    out, cache = reference.avgpool2d_forward(x, pool_size=pool, stride=stride)
    xt = torch.tensor(x, requires_grad=True)
    expected = F.avg_pool2d(xt, pool, stride=stride)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    expected.backward(torch.tensor(dout))
    dx = reference.avgpool2d_backward(dout, cache)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_both_specs_pass_the_self_check_and_every_mistake_is_recognisable():
    others = [*registry.all_registered(), *EXERCISES]
    for spec in EXERCISES:
        assert check_spec(spec, others) == [], spec.name
        reports = mistake_report(spec)
        assert [r.name for r in reports] == [m.name for m in spec.mistakes]
        assert all(r.recognisable for r in reports), reports


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(preload_torch=False) as box:
        yield box


@pytest.fixture(scope="module")
def solution() -> str:
    return render_module(EXERCISES, solution=True)


def _grade(tmp_path, sandbox, source):
    module = tmp_path / "pooling.py"
    module.write_text(source)
    return {r.name: r for r in grade_submission(module, EXERCISES, sandbox=sandbox).exercises}


def test_the_generated_solution_gets_full_marks(tmp_path, sandbox, solution):
    results = _grade(tmp_path, sandbox, solution)
    for spec in EXERCISES:
        assert results[spec.name].status.value == "passed", results[spec.name].feedback
        assert results[spec.name].score == spec.points


def test_the_unfilled_stub_is_not_implemented(tmp_path, sandbox):
    results = _grade(tmp_path, sandbox, render_module(EXERCISES, solution=False))
    assert {r.status.value for r in results.values()} == {"not_implemented"}
    assert "Exercise 4.3: avgpool2d_forward" in results["avgpool2d_forward"].feedback
    # the backward makes its cache with the student's forward, so it stops there too
    assert "Exercise 4.3: avgpool2d_forward" in results["avgpool2d_backward"].feedback


#: (exercise, mistake, the line of the solution to change, what to put instead)
MISTAKES = [
    ("avgpool2d_forward", "max_instead_of_average", ".mean(axis=(2, 3))", ".max(axis=(2, 3))"),
    ("avgpool2d_forward", "sum_instead_of_average", ".mean(axis=(2, 3))", ".sum(axis=(2, 3))"),
    (
        "avgpool2d_forward",
        "stride_ignored",
        "out[:, :, i, j] = x[:, :, i * s : i * s + p, j * s : j * s + p]",
        "out[:, :, i, j] = x[:, :, i : i + p, j : j + p]",
    ),
    ("avgpool2d_backward", "gradient_not_divided", "None, None] / p**2", "None, None]"),
    ("avgpool2d_backward", "divided_by_pool_size", "None, None] / p**2", "None, None] / p"),
    (
        "avgpool2d_backward",
        "overlap_overwritten",
        "dx[:, :, i * s : i * s + p, j * s : j * s + p] +=",
        "dx[:, :, i * s : i * s + p, j * s : j * s + p] =",
    ),
]


@pytest.mark.parametrize("exercise, mistake, old, new", MISTAKES, ids=[m[1] for m in MISTAKES])
def test_each_known_mistake_is_named(tmp_path, sandbox, solution, exercise, mistake, old, new):
    assert solution.count(old) == 1, old
    results = _grade(tmp_path, sandbox, solution.replace(old, new))
    result = results[exercise]
    assert (result.status.value, result.mistake) == ("failed", mistake), result.feedback
    assert next(m.message for m in registry_spec(exercise).mistakes if m.name == mistake) in (
        result.feedback
    )


def registry_spec(name):
    return AVGPOOL2D_FORWARD if name == AVGPOOL2D_FORWARD.name else AVGPOOL2D_BACKWARD
