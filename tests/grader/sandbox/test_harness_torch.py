"""Child-side pieces of the torch harnesses, on their own: the stale-gradient probe of the
fine-tuning harness, the packing of a block's state, and how reference weights find their
place in a student's block (names, positions, name endings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from grader.sandbox.harness_torch import (
    StaleGradientProbe,
    load_reference_state,
    match_state,
    pack_state,
    state_signature,
    unpack_state,
)


def _steps(model, opt, *, zero: str, steps: int = 4, accumulate: int = 1) -> int:
    probe = StaleGradientProbe(list(model.parameters()))
    x = torch.randn(8, 3)
    y = torch.randint(0, 2, (8,))
    for step in range(steps * accumulate):
        loss = nn.functional.cross_entropy(model(x), y) / accumulate
        if zero == "before_backward" and step % accumulate == 0:
            opt.zero_grad()
        loss.backward()
        if (step + 1) % accumulate == 0:
            if opt is None:
                with torch.no_grad():
                    for p in model.parameters():
                        p -= 0.1 * p.grad
                        if zero == "manual":
                            p.grad = None
            else:
                opt.step()
            if zero == "after_step":
                model.zero_grad(set_to_none=False)
    probe.remove()
    return probe.stale


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_loops_that_zero_the_gradients_are_never_flagged(optimizer):
    for zero in ("before_backward", "after_step"):
        model = nn.Linear(3, 2)
        make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
        opt = make(model.parameters(), lr=0.1)
        assert _steps(model, opt, zero=zero) == 0
    # gradient accumulation on purpose: several backward passes, one step, then zeroing
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert _steps(model, opt, zero="before_backward", accumulate=3) == 0
    assert _steps(nn.Linear(3, 2), None, zero="manual") == 0


@pytest.mark.parametrize("optimizer", ["sgd", "adam", None])
def test_a_loop_without_zero_grad_is_flagged_on_every_later_step(optimizer):
    model = nn.Linear(3, 2)
    if optimizer is None:
        opt = None
    else:
        make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
        opt = make(model.parameters(), lr=0.1)
    # 4 steps, 2 parameters: each of the 3 later steps adds to both old gradients
    assert _steps(model, opt, zero="never") == 6


def test_packed_state_comes_back_exactly():
    block = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    block[1].num_batches_tracked.fill_(7)
    items = [(k, v.numpy().copy()) for k, v in block.state_dict().items()]
    packed = pack_state(items)
    assert set(packed) == {"names", "dtypes", "shapes", "values"}
    for (k, v), (k2, v2) in zip(items, unpack_state(packed), strict=True):
        assert k == k2 and v.dtype == v2.dtype and np.array_equal(v, v2)


def test_weights_find_their_place_by_name_position_or_name_ending():
    ref = [("conv1.weight", (4, 2, 3, 3)), ("bn1.weight", (4,)), ("downsample.0.weight", (4, 2))]
    assert match_state(ref, ref).by == "name"
    renamed = [("a.weight", (4, 2, 3, 3)), ("b.weight", (4,)), ("c.weight", (4, 2))]
    found = match_state(ref, renamed)
    assert found.by == "order" and found.pairs["bn1.weight"] == "b.weight"
    # another container name plus an extra bias: exact names, then the same name ending
    other = [
        ("conv1.weight", (4, 2, 3, 3)),
        ("conv1.bias", (4,)),
        ("bn1.weight", (4,)),
        ("shortcut.0.weight", (4, 2)),
    ]
    found = match_state(ref, other)
    assert found.by == "partial"
    assert found.pairs == {
        "conv1.weight": "conv1.weight",
        "bn1.weight": "bn1.weight",
        "downsample.0.weight": "shortcut.0.weight",
    }
    assert found.extra(other) == ["conv1.bias"] and found.missing(ref) == []


def test_loading_sets_unmatched_parameters_to_zero():
    reference = nn.Conv2d(2, 3, 1)
    student = nn.Sequential()
    student.add_module("conv", nn.Conv2d(2, 3, 1))
    student.add_module("extra", nn.Conv2d(3, 3, 1))
    state = pack_state([(f"conv.{k}", v.numpy()) for k, v in reference.state_dict().items()])
    found = load_reference_state(student, state)
    assert found.by == "partial"
    assert torch.equal(student.conv.weight, reference.weight)
    assert not student.extra.weight.any() and not student.extra.bias.any()
    assert state_signature(student)[0] == ("conv.weight", (3, 2, 1, 1))
