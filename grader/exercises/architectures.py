"""Exercises 8.x: building one block of a classic architecture (VGG, ResNet, DenseNet).

The student writes the same builders as ``cnnref.architectures``: ``vgg_block(in_channels,
out_channels, num_convs)``, ``BasicBlock(in_channels, out_channels, stride=1)`` and
``DenseBlock(num_layers, in_channels, growth_rate, bn_size=4)``. The ``block`` harness builds
one, counts its parameters and runs it on a random input: the output shape and the parameter
count must equal the reference's (weights are the student's own, so values are not compared).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnref import architectures
from grader.exercises._common import case
from grader.sandbox.harness_torch import single_threaded
from grader.registry import Case, ExerciseSpec, Mistake, Outputs, register

TORCH = frozenset({"torch"})


@single_threaded
def _outputs(module: nn.Module | None, x: np.ndarray, *, num_params: int | None = None) -> Outputs:
    """What the ``block`` harness reports for ``module`` (``-1`` shape when forward fails)."""
    count = num_params if num_params is not None else sum(p.numel() for p in module.parameters())
    try:
        module.eval()
        with torch.no_grad():
            shape = tuple(module(torch.from_numpy(x)).shape)
    except RuntimeError:
        shape = (-1,) * x.ndim
    return {
        "num_params": np.asarray(int(count), dtype=np.int64),
        "out_shape": np.asarray(shape, dtype=np.int64),
    }


def _x(rng: np.random.Generator, n: int, c: int, h: int, w: int) -> np.ndarray:
    return rng.standard_normal((n, c, h, w)).astype(np.float32)


# ----------------------------------------------------------------------------- 8.1 VGG


def _vgg_cases(rng: np.random.Generator) -> list[Case]:
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    specs = [
        ("two convolutions (as in VGG16's first blocks)", r(2, 4), r(4, 8), 2, 8, 8),
        (
            "three convolutions, odd 9x7 input (the pool drops the last row and column)",
            r(2, 4),
            r(4, 6),
            3,
            9,
            7,
        ),
        ("one convolution, 3 input channels, batch of one", 3, r(4, 8), 1, 6, 10),
    ]
    cases = []
    for label, cin, cout, convs, h, w in specs:
        n = 1 if "batch of one" in label else 2
        cases.append(
            case(
                f"vgg_block({cin}, {cout}, {convs}) on {n}x{cin}x{h}x{w}: {label}",
                args={"in_channels": cin, "out_channels": cout, "num_convs": convs},
                x=_x(rng, n, cin, h, w),
            )
        )
    return cases


def _vgg_variant(
    c: Case,
    *,
    bias: bool = True,
    padding: int = 1,
    pool: bool = True,
    extra: int = 0,
    same_in: bool = False,
) -> Outputs:
    a = c["args"]
    layers: list[nn.Module] = []
    for i in range(a["num_convs"] + extra):
        cin = a["in_channels"] if i == 0 or same_in else a["out_channels"]
        layers += [nn.Conv2d(cin, a["out_channels"], 3, padding=padding, bias=bias), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return _outputs(nn.Sequential(*layers), c["x"])


register(
    ExerciseSpec(
        name="vgg_block",
        number="8.1",
        topic="architectures",
        title="A VGG block: num_convs x (3x3 'same' conv + ReLU), then 2x2 max-pool",
        points=2,
        function="vgg_block",
        harness="block",
        make_cases=_vgg_cases,
        reference=lambda c: _outputs(architectures.vgg_block(**c["args"]), c["x"]),
        reference_function=architectures.vgg_block,
        timeout_s=15.0,
        mistakes=(
            Mistake(
                "pool_missing",
                "max-pool missing: a VGG block ends with MaxPool2d(2, stride 2), which halves "
                "the height and width",
                lambda c: _vgg_variant(c, pool=False),
            ),
            Mistake(
                "padding_missing",
                "padding missing: VGG's 3x3 convolutions use padding=1 ('same'), so only the "
                "pool changes the size",
                lambda c: _vgg_variant(c, padding=0),
            ),
            Mistake(
                "bias_forgotten",
                "bias forgotten: VGG's convolutions have a bias (9*C_in*C_out + C_out "
                "parameters each)",
                lambda c: _vgg_variant(c, bias=False),
            ),
            Mistake(
                "one_conv_too_many",
                "one convolution too many: the block has exactly num_convs convolutions",
                lambda c: _vgg_variant(c, extra=1),
            ),
        ),
        tags=TORCH,
    )
)

# ----------------------------------------------------------------------------- 8.2 ResNet


def _basic_cases(rng: np.random.Generator) -> list[Case]:
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    c1, c2 = r(3, 6), r(3, 6)
    specs = [
        ("same channels, stride 1: identity shortcut", c1, c1, 1, 8, 8),
        ("stride 2 and twice the channels: projection shortcut", c2, 2 * c2, 2, 8, 10),
        ("stride 2, odd 7x9 input, same channels: projection shortcut", c1, c1, 2, 7, 9),
        ("stride 1, more channels: projection shortcut", c1, c1 + r(1, 3), 1, 6, 6),
    ]
    return [
        case(
            f"BasicBlock({cin}, {cout}, stride={s}) on 2x{cin}x{h}x{w}: {label}",
            args={"in_channels": cin, "out_channels": cout, "stride": s},
            x=_x(rng, 2, cin, h, w),
        )
        for label, cin, cout, s, h, w in specs
    ]


class _Basic(nn.Module):
    """A residual block built some (possibly wrong) way, for the known mistakes."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        *,
        bias: bool = False,
        projection: str = "when_needed",
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
            nn.BatchNorm2d(cout),
        )
        needed = stride != 1 or cin != cout
        self.shortcut: nn.Module | None = None
        if projection == "always" or (projection == "when_needed" and needed):
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=bias), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.body(x) + identity)


def _basic_variant(c: Case, **kwargs) -> Outputs:
    a = c["args"]
    return _outputs(_Basic(a["in_channels"], a["out_channels"], a["stride"], **kwargs), c["x"])


register(
    ExerciseSpec(
        name="BasicBlock",
        number="8.2",
        topic="architectures",
        title="A ResNet basic block with its shortcut (identity or 1x1 projection)",
        points=3,
        function="BasicBlock",
        harness="block",
        make_cases=_basic_cases,
        reference=lambda c: _outputs(architectures.BasicBlock(**c["args"]), c["x"]),
        reference_function=architectures.BasicBlock,
        timeout_s=15.0,
        mistakes=(
            Mistake(
                "projection_missing",
                "projection shortcut missing: when the stride is not 1 or the channels change, "
                "x cannot be added as it is; the shortcut is a 1x1 convolution with the same "
                "stride, then BatchNorm",
                lambda c: _basic_variant(c, projection="never"),
            ),
            Mistake(
                "bias_before_batchnorm",
                "bias in the convolutions before BatchNorm: BatchNorm subtracts the mean, so a "
                "bias there is wasted; use bias=False",
                lambda c: _basic_variant(c, bias=True),
            ),
            Mistake(
                "projection_always",
                "projection on every block: when the shapes agree the shortcut is the identity "
                "(no parameters)",
                lambda c: _basic_variant(c, projection="always"),
            ),
        ),
        tags=TORCH,
    )
)

# ----------------------------------------------------------------------------- 8.3 DenseNet


def _dense_cases(rng: np.random.Generator) -> list[Case]:
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    specs = [
        ("3 layers, growth rate 4", 3, r(4, 8), 4, None, 6, 6),
        ("4 layers, bn_size 2, non-square input", 4, r(3, 6), r(2, 5), 2, 5, 7),
        ("a single layer, batch of one", 1, r(4, 8), r(3, 6), None, 4, 4),
    ]
    cases = []
    for label, layers, cin, k, bn_size, h, w in specs:
        n = 1 if "batch of one" in label else 2
        args = {"num_layers": layers, "in_channels": cin, "growth_rate": k}
        if bn_size is not None:
            args["bn_size"] = bn_size
        call = ", ".join(f"{key}={value}" for key, value in args.items())
        cases.append(
            case(
                f"DenseBlock({call}) on {n}x{cin}x{h}x{w}: {label}",
                args=args,
                x=_x(rng, n, cin, h, w),
            )
        )
    return cases


class _Dense(nn.Module):
    """A dense block built some (possibly wrong) way, for the known mistakes."""

    def __init__(
        self,
        num_layers: int,
        cin: int,
        k: int,
        bn_size: int = 4,
        *,
        inputs=lambda cin, k, i: cin + i * k,
        concat: bool = True,
        bias: bool = False,
        bottleneck: bool = True,
    ) -> None:
        super().__init__()
        self.concat = concat
        layers = []
        for i in range(num_layers):
            c = inputs(cin, k, i)
            if bottleneck:
                layers.append(
                    nn.Sequential(
                        nn.BatchNorm2d(c),
                        nn.ReLU(),
                        nn.Conv2d(c, bn_size * k, 1, bias=bias),
                        nn.BatchNorm2d(bn_size * k),
                        nn.ReLU(),
                        nn.Conv2d(bn_size * k, k, 3, padding=1, bias=bias),
                    )
                )
            else:
                layers.append(
                    nn.Sequential(
                        nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, k, 3, padding=1, bias=bias)
                    )
                )
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1) if self.concat else features[-1]))
        return torch.cat(features, 1) if self.concat else features[-1]


def _dense_variant(c: Case, **kwargs) -> Outputs:
    a = c["args"]
    module = _Dense(
        a["num_layers"], a["in_channels"], a["growth_rate"], a.get("bn_size", 4), **kwargs
    )
    return _outputs(module, c["x"])


register(
    ExerciseSpec(
        name="DenseBlock",
        number="8.3",
        topic="architectures",
        title="A DenseNet block: each layer sees the concatenation of all earlier feature maps",
        points=3,
        function="DenseBlock",
        harness="block",
        make_cases=_dense_cases,
        reference=lambda c: _outputs(architectures.DenseBlock(**c["args"]), c["x"]),
        reference_function=architectures.DenseBlock,
        timeout_s=15.0,
        mistakes=(
            Mistake(
                "growth_off_by_one",
                "input channels off by one growth step: layer l (from 0) sees "
                "in_channels + l*growth_rate channels, not in_channels + (l+1)*growth_rate",
                lambda c: (
                    _dense_variant(c, inputs=lambda cin, k, i: cin + (i + 1) * k)
                    if c["args"]["num_layers"] > 0
                    else None
                ),
            ),
            Mistake(
                "no_concatenation",
                "layers chained instead of concatenated: each layer's input is the "
                "concatenation [x_0, x_1, ..., x_{l-1}], and the block returns all of them "
                "(in_channels + num_layers*growth_rate channels)",
                lambda c: _dense_variant(
                    c, inputs=lambda cin, k, i: cin if i == 0 else k, concat=False
                ),
            ),
            Mistake(
                "bias_before_batchnorm",
                "bias in the convolutions before BatchNorm: use bias=False",
                lambda c: _dense_variant(c, bias=True),
            ),
            Mistake(
                "bottleneck_missing",
                "1x1 bottleneck missing: each DenseNet-BC layer is BN-ReLU-conv1x1 "
                "(bn_size*growth_rate channels), then BN-ReLU-conv3x3 (growth_rate channels)",
                lambda c: _dense_variant(c, bottleneck=False),
            ),
        ),
        tags=TORCH,
    )
)
