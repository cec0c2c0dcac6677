"""Exercises 8.x: building one block of a classic architecture (VGG, ResNet, DenseNet).

The student writes the same builders as ``cnnref.architectures``: ``vgg_block(in_channels,
out_channels, num_convs)``, ``BasicBlock(in_channels, out_channels, stride=1)`` and
``DenseBlock(num_layers, in_channels, growth_rate, bn_size=4)``, with torchvision's names for
their layers (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample``; ``denselayer1``, ... with
``norm1``, ``relu1``, ``conv1``, ``norm2``, ``relu2``, ``conv2``; a VGG block's convolutions at
``nn.Sequential`` indices 0, 2, 4, ...).

Blocks are compared by value. The ``block`` harness (``grader.sandbox.harness_torch``) builds
the student's block, loads the reference's weights into it by name (BatchNorm statistics
included, drawn away from their defaults so that eval and train mode differ), and runs it on
the same input in eval mode and in train mode: its output and the gradient of
``sum(out * g)`` with respect to the input (``g`` a fixed random upstream gradient) must equal
the reference's, and so must its parameter count. A block with merely the right parameter
count and output shape fails every case; a known mistake (stride on the wrong convolution,
ReLU before the addition, a reversed concatenation, ...) is recognised by its values, and
one whose forward pass raises by its error and parameter count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cnnref import architectures
from grader.exercises._common import case
from grader.registry import Case, ExerciseSpec, Mistake, Outputs, register
from grader.sandbox.harness_torch import (
    BLOCK_VALUES,
    block_outputs,
    pack_state,
    single_threaded,
)

TORCH = frozenset({"torch"})
#: What a block's outputs are compared on, in this order (the first difference is shown).
EXPECTED = ("forward_error", "num_params", *BLOCK_VALUES)
#: float32 forward and backward passes: the same operations in another order differ by
#: about 1e-6 relative.
RTOL, ATOL = 1e-4, 1e-5


def _x(rng: np.random.Generator, n: int, c: int, h: int, w: int) -> np.ndarray:
    return rng.standard_normal((n, c, h, w)).astype(np.float32)


@single_threaded
def _reference_state(make: Callable[[], nn.Module], seed: int) -> dict[str, np.ndarray]:
    """The reference block's state dict in registration order, packed into four arrays
    (:func:`grader.sandbox.harness_torch.pack_state`).

    Weights come from torch's initialisation under ``seed``; BatchNorm layers get affine
    parameters and running statistics away from their defaults (1, 0, 0, 1), so that a
    BatchNorm in the wrong place, or the wrong mode, changes the output.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = make()
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.3)
                    m.running_mean.normal_(0.0, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.num_batches_tracked.fill_(100)
    return pack_state([(k, v.detach().numpy().copy()) for k, v in module.state_dict().items()])


def _block_case(
    rng: np.random.Generator, label: str, make: Callable[..., nn.Module], args: dict, x
) -> Case:
    seed = int(rng.integers(0, 2**31 - 1))
    return case(
        label,
        args=args,
        x=x,
        state=_reference_state(lambda: make(**args), seed),
        grad_seed=int(rng.integers(0, 2**31 - 1)),
    )


@single_threaded
def _outputs(module: nn.Module, c: Case) -> Outputs:
    """What the ``block`` harness reports for ``module`` on case ``c``, limited to the
    compared outputs (a block whose forward pass raises gives ``forward_error`` and
    ``num_params`` only)."""
    produced = block_outputs(module, c)
    return {k: produced[k] for k in EXPECTED if k in produced}


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
        args = {"in_channels": cin, "out_channels": cout, "num_convs": convs}
        cases.append(
            _block_case(
                rng,
                f"vgg_block({cin}, {cout}, {convs}) on {n}x{cin}x{h}x{w}: {label}",
                architectures.vgg_block,
                args,
                _x(rng, n, cin, h, w),
            )
        )
    return cases


def _vgg_variant(
    c: Case,
    *,
    bias: bool = True,
    padding: int = 1,
    pool: str | None = "max",
    extra: int = 0,
    relu: bool = True,
) -> Outputs:
    a = c["args"]
    layers: list[nn.Module] = []
    for i in range(a["num_convs"] + extra):
        cin = a["in_channels"] if i == 0 else a["out_channels"]
        layers.append(nn.Conv2d(cin, a["out_channels"], 3, padding=padding, bias=bias))
        if relu:
            layers.append(nn.ReLU())
    if pool == "max":
        layers.append(nn.MaxPool2d(2))
    elif pool == "avg":
        layers.append(nn.AvgPool2d(2))
    return _outputs(nn.Sequential(*layers), c)


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
        reference=lambda c: _outputs(architectures.vgg_block(**c["args"]), c),
        reference_function=architectures.vgg_block,
        rtol=RTOL,
        atol=ATOL,
        timeout_s=15.0,
        postprocess="block",
        explain="block",
        mistakes=(
            Mistake(
                "pool_missing",
                "max-pool missing: a VGG block ends with MaxPool2d(2, stride 2), which halves "
                "the height and width",
                lambda c: _vgg_variant(c, pool=None),
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
            Mistake(
                "relu_missing",
                "ReLU missing: every 3x3 convolution of a VGG block is followed by a ReLU",
                lambda c: _vgg_variant(c, relu=False),
            ),
            Mistake(
                "average_pool",
                "average pooling instead of max pooling: VGG blocks end with MaxPool2d(2)",
                lambda c: _vgg_variant(c, pool="avg"),
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
        _block_case(
            rng,
            f"BasicBlock({cin}, {cout}, stride={s}) on 2x{cin}x{h}x{w}: {label}",
            architectures.BasicBlock,
            {"in_channels": cin, "out_channels": cout, "stride": s},
            _x(rng, 2, cin, h, w),
        )
        for label, cin, cout, s, h, w in specs
    ]


class _Basic(nn.Module):
    """A residual block built some (possibly wrong) way, with torchvision's names, as a
    student would write it.

    Args:
        bias: convolutions with a bias.
        projection: ``"when_needed"`` (right), ``"never"`` or ``"always"``.
        strided: which 3x3 convolution has the stride (``"conv1"`` is right).
        shortcut_stride: the projection's 1x1 convolution has the stride.
        relu: ``"after"`` the addition (right), ``"missing"`` (none after it), ``"before"``
            (on the residual branch before the addition, none after), ``"both"``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        *,
        bias: bool = False,
        projection: str = "when_needed",
        strided: str = "conv1",
        shortcut_stride: bool = True,
        relu: str = "after",
    ) -> None:
        super().__init__()
        s1, s2 = (stride, 1) if strided == "conv1" else (1, stride)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=s1, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=s2, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(cout)
        self.how = relu
        needed = stride != 1 or cin != cout
        self.downsample: nn.Module | None = None
        if projection == "always" or (projection == "when_needed" and needed):
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride if shortcut_stride else 1, bias=bias),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.how == "missing":
            return out + identity
        if self.how == "before":
            return self.relu(out) + identity
        if self.how == "both":
            return self.relu(self.relu(out) + identity)
        return self.relu(out + identity)


def _basic_variant(c: Case, **kwargs) -> Outputs:
    a = c["args"]
    return _outputs(_Basic(a["in_channels"], a["out_channels"], a["stride"], **kwargs), c)


def _strided(c: Case, **kwargs) -> Outputs | None:
    """A variant that only differs from the reference when the block has a stride."""
    return _basic_variant(c, **kwargs) if c["args"]["stride"] != 1 else None


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
        reference=lambda c: _outputs(architectures.BasicBlock(**c["args"]), c),
        reference_function=architectures.BasicBlock,
        rtol=RTOL,
        atol=ATOL,
        timeout_s=15.0,
        postprocess="block",
        explain="block",
        mistakes=(
            Mistake(
                "projection_missing",
                "projection shortcut missing: when the stride is not 1 or the channels change, "
                "x cannot be added as it is; the shortcut (downsample) is a 1x1 convolution "
                "with the same stride, then BatchNorm",
                lambda c: _basic_variant(c, projection="never"),
            ),
            Mistake(
                "shortcut_stride_missing",
                "the shortcut's 1x1 convolution has no stride: it must have the block's stride, "
                "so that x shrinks like the residual branch (downsample = conv1x1(stride) + BN)",
                lambda c: _strided(c, shortcut_stride=False),
            ),
            Mistake(
                "stride_on_second_conv",
                "stride on the second 3x3 convolution: in a ResNet basic block the FIRST 3x3 "
                "convolution (conv1) has the stride, conv2 always has stride 1",
                lambda c: _strided(c, strided="conv2"),
            ),
            Mistake(
                "relu_before_addition",
                "ReLU before the addition: the residual branch ends with bn2 (no ReLU), x is "
                "added, and the ReLU comes after the sum: relu(bn2(conv2(...)) + identity)",
                lambda c: _basic_variant(c, relu="before"),
            ),
            Mistake(
                "relu_after_addition_missing",
                "no ReLU after the addition: the block returns relu(out + identity)",
                lambda c: _basic_variant(c, relu="missing"),
            ),
            Mistake(
                "relu_before_and_after_addition",
                "an extra ReLU before the addition: the residual branch ends with bn2 (no ReLU); "
                "only the sum goes through a ReLU",
                lambda c: _basic_variant(c, relu="both"),
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
                "(downsample is None, no parameters)",
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
            _block_case(
                rng,
                f"DenseBlock({call}) on {n}x{cin}x{h}x{w}: {label}",
                architectures.DenseBlock,
                args,
                _x(rng, n, cin, h, w),
            )
        )
    return cases


class _Layer(nn.Module):
    """One dense layer with torchvision's names (``norm1``, ``relu1``, ``conv1``, ...)."""

    def __init__(self, c: int, k: int, bn_size: int, *, bias: bool, bottleneck: bool) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(c)
        self.relu1 = nn.ReLU()
        if bottleneck:
            self.conv1 = nn.Conv2d(c, bn_size * k, 1, bias=bias)
            self.norm2 = nn.BatchNorm2d(bn_size * k)
            self.relu2 = nn.ReLU()
            self.conv2 = nn.Conv2d(bn_size * k, k, 3, padding=1, bias=bias)
        else:
            self.conv1 = nn.Conv2d(c, k, 3, padding=1, bias=bias)
        self.bottleneck = bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(out))) if self.bottleneck else out


class _Dense(nn.Module):
    """A dense block built some (possibly wrong) way, with torchvision's names.

    Args:
        inputs: input channels of layer ``i`` (``cin + i*k`` is right).
        concat: ``"all"`` (right), ``"none"`` (layers chained) or ``"reversed"`` (newest
            maps first).
        output: ``"all"`` (right: the input and every layer's maps) or ``"new"`` (only the
            layers' maps).
    """

    def __init__(
        self,
        num_layers: int,
        cin: int,
        k: int,
        bn_size: int = 4,
        *,
        inputs: Callable[[int, int, int], int] = lambda cin, k, i: cin + i * k,
        concat: str = "all",
        output: str = "all",
        bias: bool = False,
        bottleneck: bool = True,
    ) -> None:
        super().__init__()
        self.concat, self.output = concat, output
        for i in range(num_layers):
            layer = _Layer(inputs(cin, k, i), k, bn_size, bias=bias, bottleneck=bottleneck)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.children():
            if self.concat == "none":
                features.append(layer(features[-1]))
            elif self.concat == "reversed":
                features.insert(0, layer(torch.cat(features, 1)))
            else:
                features.append(layer(torch.cat(features, 1)))
        if self.concat == "none":
            return features[-1]
        if self.output == "new":
            return torch.cat(features[1:], 1)
        return torch.cat(features, 1)


def _dense_variant(c: Case, **kwargs) -> Outputs:
    a = c["args"]
    module = _Dense(
        a["num_layers"], a["in_channels"], a["growth_rate"], a.get("bn_size", 4), **kwargs
    )
    return _outputs(module, c)


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
        reference=lambda c: _outputs(architectures.DenseBlock(**c["args"]), c),
        reference_function=architectures.DenseBlock,
        rtol=RTOL,
        atol=ATOL,
        timeout_s=15.0,
        postprocess="block",
        explain="block",
        mistakes=(
            Mistake(
                "growth_off_by_one",
                "input channels off by one growth step: layer l (from 0) sees "
                "in_channels + l*growth_rate channels, not in_channels + (l+1)*growth_rate",
                lambda c: _dense_variant(c, inputs=lambda cin, k, i: cin + (i + 1) * k),
            ),
            Mistake(
                "no_concatenation",
                "layers chained instead of concatenated: each layer's input is the "
                "concatenation [x_0, x_1, ..., x_{l-1}], and the block returns all of them "
                "(in_channels + num_layers*growth_rate channels)",
                lambda c: _dense_variant(
                    c, inputs=lambda cin, k, i: cin if i == 0 else k, concat="none"
                ),
            ),
            Mistake(
                "reversed_concatenation",
                "concatenation in reverse order: torch.cat([x_0, x_1, ..., x_{l-1}], 1) keeps "
                "the oldest maps first (the block's input, then each layer's new maps in order)",
                lambda c: _dense_variant(c, concat="reversed"),
            ),
            Mistake(
                "input_missing_from_output",
                "the block's input is missing from its output: a dense block returns the "
                "concatenation of its input and every layer's new maps",
                lambda c: _dense_variant(c, output="new"),
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
