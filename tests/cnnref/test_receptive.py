"""cnnref.receptive: the formula checked empirically, without reusing it.

For a stack of convolutions (all-positive weights) and average pools (same geometry as max
pools, but every tap passes gradient), the input gradient of one output unit is non-zero
exactly on that unit's receptive field, so its extent must be ``rf`` and its centre
``start + i * jump``. Output sizes come from the shapes torch produces.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

from cnnref.params import Conv2D, MaxPool2D
from cnnref.receptive import ReceptiveField, receptive_field


def _tf_same(n: int, k_eff: int, s: int) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + k_eff - n, 0)
    return total // 2, total - total // 2


def _run_1d(layers, x: torch.Tensor) -> torch.Tensor:
    """The stack applied along one axis with torch (conv1d with ones, avg_pool1d)."""
    for layer in layers:
        if isinstance(layer, MaxPool2D):
            k = layer.pool_size
            s = layer.stride or k
            d, padding = 1, layer.padding
        else:
            k, s, d, padding = layer.kernel_size, layer.stride, layer.dilation, layer.padding
        k_eff = d * (k - 1) + 1
        if padding == "same":
            x = F.pad(x, _tf_same(x.shape[-1], k_eff, s))
        elif padding != "valid":
            x = F.pad(x, (padding[0], padding[0]))  # Conv2D stores int padding as a pair
        if isinstance(layer, MaxPool2D):
            x = F.avg_pool1d(x, k, s)
        else:
            x = F.conv1d(x, torch.ones(1, 1, k, dtype=x.dtype), stride=s, dilation=d)
    return x


def _check_record(layers, n_in: int, record: ReceptiveField) -> int:
    """Assert ``record`` against torch for the stack ``layers``; returns units checked."""
    x = torch.zeros(1, 1, n_in, dtype=torch.float64, requires_grad=True)
    out = _run_1d(layers, x)
    assert out.shape[-1] == record.n_out
    checked = 0
    for i in range(record.n_out):
        (grad,) = torch.autograd.grad(out[0, 0, i], x, retain_graph=True)
        nonzero = np.flatnonzero(grad[0, 0].numpy() > 0)
        centre = record.start + i * record.jump
        left, right = centre - (record.rf - 1) / 2, centre + (record.rf - 1) / 2
        if left >= 0 and right <= n_in - 1:  # the whole field lies inside the input
            assert (nonzero[0], nonzero[-1]) == (left, right), f"unit {i}"
            checked += 1
        else:  # clipped by padding: what it sees is still inside its field
            assert nonzero.size == 0 or (nonzero[0] >= left and nonzero[-1] <= right)
    return checked


conv_layers = st.builds(
    Conv2D,
    filters=st.just(1),
    kernel_size=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])),
    dilation=st.integers(1, 3),
)
pool_layers = st.builds(
    MaxPool2D,
    pool_size=st.integers(1, 3),
    stride=st.one_of(st.none(), st.integers(1, 3)),
    padding=st.sampled_from(["valid", "same"]),
)


@given(
    layers=st.lists(st.one_of(conv_layers, conv_layers, pool_layers), min_size=1, max_size=4),
    n_in=st.integers(12, 48),
)
def test_receptive_field_equals_the_input_gradient_extent(layers, n_in):
    try:
        records = receptive_field(layers, n_in)
    except ValueError:
        assume(False)  # the stack shrank the input away
    assert len(records) == len(layers)
    checked = 0
    for depth in range(1, len(layers) + 1):
        checked += _check_record(layers[:depth], n_in, records[depth - 1])
    assume(checked > 0)


def test_lecture_5x5_k3_p1_s2_twice():
    layer = Conv2D(1, 3, stride=2, padding=1)
    assert receptive_field([layer, layer], 5) == [
        ReceptiveField(n_out=3, jump=2, rf=3, start=0.0),
        ReceptiveField(n_out=2, jump=4, rf=7, start=0.0),
    ]


def test_stacked_3x3_convolutions_see_5x5_then_7x7():
    records = receptive_field([Conv2D(1, 3)] * 3, 32)
    assert [r.rf for r in records] == [3, 5, 7]
    assert [r.start for r in records] == [1.0, 2.0, 3.0]


def test_dilations_1_2_4_grow_the_field_exponentially():
    records = receptive_field([Conv2D(1, 3, dilation=d) for d in (1, 2, 4)], 32)
    assert [r.rf for r in records] == [3, 7, 15]
    assert [r.n_out for r in records] == [30, 26, 18]


def test_pooling_multiplies_the_jump_and_even_windows_give_half_pixel_starts():
    records = receptive_field([Conv2D(1, 3), MaxPool2D(2), Conv2D(1, 3)], 32)
    assert records[1] == ReceptiveField(n_out=15, jump=2, rf=4, start=1.5)
    assert records[2] == ReceptiveField(n_out=13, jump=2, rf=8, start=3.5)


def test_padding_gives_a_negative_start():
    (record,) = receptive_field([Conv2D(1, 3, padding=2)], 10)
    assert record == ReceptiveField(n_out=12, jump=1, rf=3, start=-1.0)


def test_duck_typed_layers_like_the_sandbox_passes():
    conv = SimpleNamespace(kernel_size=3, stride=2, padding=1, dilation=1)
    pool = SimpleNamespace(pool_size=(2, 2), stride=None)
    assert receptive_field([conv, pool], 5) == receptive_field(
        [Conv2D(1, 3, stride=2, padding=1), MaxPool2D(2)], 5
    )


@pytest.mark.parametrize(
    "layers, size, match",
    [
        ([Conv2D(1, 3)], 0, "input_size must be a positive int"),
        ([SimpleNamespace(units=4)], 8, "neither a convolution"),
        ([Conv2D(1, (3, 5))], 8, "kernel_size must be an int or a square pair"),
        (
            [SimpleNamespace(kernel_size=3, stride=-1, padding=0, dilation=1)],
            8,
            "stride must be a positive int",
        ),
        (
            [SimpleNamespace(kernel_size=3, stride=1, padding="full", dilation=1)],
            8,
            "padding must be",
        ),
        ([Conv2D(1, 5)] * 3, 8, r"layers\[1\] \(Conv2D\): the kernel spans 5 pixels"),
    ],
)
def test_bad_layers(layers, size, match):
    with pytest.raises(ValueError, match=match):
        receptive_field(layers, size)
