"""The classic CNN architectures of the lecture, written out in plain ``torch.nn`` (torch).

No torchvision: every model here is built from its own blocks, with the same layer structure
as torchvision's, so the parameter counts equal the published ones (1000 classes):

=============  ===========
model          parameters
=============  ===========
LeNet-5 (10)        61,706
AlexNet         61,100,840
VGG16          138,357,544
GoogLeNet        7,005,832  (the paper's 5x5 branch; torchvision's 3x3 slip gives 6,624,904)
ResNet-18       11,689,512
ResNet-34       21,797,672
ResNet-50       25,557,032
ResNet-101      44,549,160
ResNet-152      60,192,808
MobileNet v1     4,231,976
DenseNet-121     7,978,856
=============  ===========

The blocks are public so that exercises can ask for one of them: :func:`vgg_block`,
:class:`BasicBlock`, :class:`Bottleneck`, :class:`DenseLayer`, :class:`DenseBlock`,
:class:`InceptionModule`, :class:`DepthwiseSeparable`. :func:`count_params` builds on the
meta device (no memory, no initialisation cost) and :func:`summary` lists output shape and
parameters per layer or block.

Shapes use ``N`` batch, ``C`` channels, ``H, W`` height and width. ``k`` is a kernel size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "BasicBlock",
    "Bottleneck",
    "DenseBlock",
    "DenseLayer",
    "DepthwiseSeparable",
    "InceptionModule",
    "ModelSummary",
    "SmallCNN",
    "SummaryRow",
    "alexnet",
    "build",
    "count_params",
    "densenet121",
    "googlenet",
    "lenet5",
    "mobilenet_v1",
    "resnet",
    "summary",
    "vgg16",
    "vgg_block",
]


# ----------------------------------------------------------------------------- LeNet-5


def lenet5(num_classes: int = 10, *, in_channels: int = 1) -> nn.Sequential:
    """LeNet-5 (LeCun et al., 1998) for ``(N, in_channels, 32, 32)`` digits.

    conv 5x5 (6) -> avg-pool 2 -> conv 5x5 (16) -> avg-pool 2 -> conv 5x5 (120) -> fc 84 ->
    fc ``num_classes``, tanh activations. With one input channel and 10 classes it has
    156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 parameters.

    Args:
        num_classes: outputs of the last layer.
        in_channels: ``C`` of the input (1 for the original grey-scale digits).

    Returns:
        A model mapping ``(N, C, 32, 32)`` to logits ``(N, num_classes)``.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5),  # 32 -> 28
        nn.Tanh(),
        nn.AvgPool2d(2),  # 28 -> 14
        nn.Conv2d(6, 16, 5),  # 14 -> 10
        nn.Tanh(),
        nn.AvgPool2d(2),  # 10 -> 5
        nn.Conv2d(16, 120, 5),  # 5 -> 1
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )


# ----------------------------------------------------------------------------- AlexNet


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky et al., 2012) in torchvision's single-tower layout.

    ``features`` (five convolutions, three max-pools) -> adaptive average pool to 6x6 ->
    ``classifier`` (dropout, fc 9216->4096, fc 4096->4096, fc 4096->num_classes).
    Input ``(N, 3, 224, 224)``; output ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, num_classes)``."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def alexnet(num_classes: int = 1000) -> AlexNet:
    """AlexNet with ``num_classes`` outputs (61,100,840 parameters for 1000)."""
    return AlexNet(num_classes)


# ----------------------------------------------------------------------------- VGG


def vgg_block(in_channels: int, out_channels: int, num_convs: int) -> nn.Sequential:
    """One VGG block: ``num_convs`` times (conv 3x3 'same' + ReLU), then max-pool 2x2 stride 2.

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, out_channels, floor(H/2), floor(W/2))``.

    Parameters: ``(9*in_channels + 1)*out_channels + (num_convs - 1)*(9*out_channels + 1)*
    out_channels`` (each 3x3 convolution has ``9*C_in*C_out`` weights and ``C_out`` biases).

    Args:
        in_channels: channels entering the first convolution.
        out_channels: channels of every convolution of the block.
        num_convs: number of 3x3 convolutions (2 or 3 in VGG16), at least 1.

    Returns:
        ``nn.Sequential(conv, ReLU, ..., MaxPool2d)``: the convolutions at indices 0, 2, 4, ...
        as in torchvision's VGG ``features`` (the grader loads weights by these names:
        ``0.weight``, ``0.bias``, ``2.weight``, ...).
    """
    if num_convs < 1:
        raise ValueError(f"num_convs must be at least 1, got {num_convs}")
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers.append(
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1)
        )
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG (Simonyan and Zisserman, 2014): VGG blocks, adaptive pool to 7x7, three fc layers.

    Input ``(N, 3, 224, 224)``; output ``(N, num_classes)``.
    """

    def __init__(
        self,
        block_config: tuple[tuple[int, int], ...] = (
            (2, 64),
            (2, 128),
            (3, 256),
            (3, 512),
            (3, 512),
        ),
        num_classes: int = 1000,
        *,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = 3
        for num_convs, width in block_config:
            blocks.extend(vgg_block(channels, width, num_convs))
            channels = width
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, num_classes)``."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg16(num_classes: int = 1000) -> VGG:
    """VGG16: blocks of 2, 2, 3, 3, 3 convolutions (138,357,544 parameters for 1000 classes)."""
    return VGG(num_classes=num_classes)


# ----------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """The ResNet-18/34 residual block: ``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``.

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, out_channels, H', W')`` with
    ``H' = floor((H - 1)/stride) + 1`` (3x3 'same' convolutions, the first one strided).

    The shortcut is the identity when shapes agree, otherwise a 1x1 convolution with the
    same stride followed by batch norm (torchvision's "option B").

    Parameters (convolutions have no bias; each BatchNorm has 2 per channel):
    ``9*in*out + 9*out*out + 4*out``, plus ``in*out + 2*out`` with a projection shortcut.

    Args:
        in_channels: ``C`` of the input.
        out_channels: ``C`` of the output.
        stride: stride of the first convolution and of the shortcut (1 or 2).
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        """Make the layers under torchvision's names (the grader loads weights by them):

        ``conv1`` (3x3, stride ``stride``, padding 1, no bias), ``bn1``, ``relu``, ``conv2``
        (3x3, padding 1, no bias), ``bn2``, and ``downsample``: ``None`` for the identity
        shortcut, else ``nn.Sequential(conv 1x1 with stride stride and no bias, BatchNorm2d)``.
        """
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, out_channels, H', W')``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """The ResNet-50/101/152 bottleneck block: 1x1 reduce, 3x3 (strided), 1x1 expand, + shortcut.

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, expansion*width, H', W')`` with
    ``H' = floor((H - 1)/stride) + 1``. The stride sits on the 3x3 convolution (torchvision's
    "ResNet v1.5").

    Parameters (no conv bias, 2 per BatchNorm channel), with ``out = expansion*width``:
    ``in*width + 9*width*width + width*out + 2*(2*width + out)``, plus ``in*out + 2*out`` when
    a projection shortcut is needed (``stride != 1`` or ``in_channels != out``).

    Args:
        in_channels: ``C`` of the input.
        width: channels of the two inner convolutions ("planes" in torchvision).
        stride: stride of the 3x3 convolution and of the shortcut.
        expansion: output channels are ``expansion*width`` (4 in ResNet).
    """

    expansion = 4

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, *, expansion: int = 4
    ) -> None:
        super().__init__()
        out_channels = width * expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, expansion*width, H', W')``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet (He et al., 2015): 7x7 stem, four stages of residual blocks, global pool, fc.

    Input ``(N, 3, 224, 224)``; after ``conv1``/``maxpool`` 56x56, stages 56, 28, 14, 7;
    output ``(N, num_classes)``.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = 64
        stages = []
        for i, (num_blocks, width) in enumerate(zip(layers, (64, 128, 256, 512), strict=False)):
            blocks: list[nn.Module] = []
            for j in range(num_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(channels, width, stride))
                channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, num_classes)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_RESNET_LAYERS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def resnet(depth: int, num_classes: int = 1000) -> ResNet:
    """ResNet-``depth`` for depth in 18, 34 (BasicBlock), 50, 101, 152 (Bottleneck)."""
    if depth not in _RESNET_LAYERS:
        raise ValueError(f"ResNet depth must be one of {sorted(_RESNET_LAYERS)}, got {depth}")
    block, layers = _RESNET_LAYERS[depth]
    return ResNet(block, layers, num_classes)


# ----------------------------------------------------------------------------- GoogLeNet


def _conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, **conv: int
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm(eps=1e-3) + ReLU: torchvision's ``BasicConv2d``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, bias=False, **conv),
        nn.BatchNorm2d(out_channels, eps=0.001),
        nn.ReLU(inplace=True),
    )


class InceptionModule(nn.Module):
    """GoogLeNet's inception module: four parallel branches concatenated along channels.

    Branches ('same' padding everywhere, so all keep ``H, W``):
    1x1 (``ch1x1``); 1x1 reduce (``ch3x3_reduce``) -> 3x3 (``ch3x3``);
    1x1 reduce (``ch5x5_reduce``) -> kxk (``ch5x5``, ``k = large_kernel_size``);
    3x3 max-pool stride 1 -> 1x1 (``pool_proj``).

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)``.

    Parameters (every convolution is conv without bias + BatchNorm, 2 per channel):
    ``in*ch1x1 + in*r3 + 9*r3*ch3x3 + in*r5 + k*k*r5*ch5x5 + in*pool_proj`` plus
    ``2*(ch1x1 + r3 + ch3x3 + r5 + ch5x5 + pool_proj)``.

    Args:
        in_channels: ``C`` of the input.
        ch1x1, ch3x3_reduce, ch3x3, ch5x5_reduce, ch5x5, pool_proj: branch widths.
        large_kernel_size: kernel of the last branch-3 convolution: 5 as in the paper;
            torchvision uses 3 (a known slip it keeps for its pretrained weights).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
        *,
        large_kernel_size: int = 5,
    ) -> None:
        super().__init__()
        if large_kernel_size % 2 != 1:
            raise ValueError(
                f"large_kernel_size must be odd for 'same' padding, got {large_kernel_size}"
            )
        self.branch1 = _conv_bn_relu(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(
            _conv_bn_relu(in_channels, ch3x3_reduce, 1),
            _conv_bn_relu(ch3x3_reduce, ch3x3, 3, padding=1),
        )
        self.branch3 = nn.Sequential(
            _conv_bn_relu(in_channels, ch5x5_reduce, 1),
            _conv_bn_relu(ch5x5_reduce, ch5x5, large_kernel_size, padding=large_kernel_size // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            _conv_bn_relu(in_channels, pool_proj, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)``."""
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    """GoogLeNet / Inception v1 (Szegedy et al., 2014) without the auxiliary classifiers.

    Stem (7x7/2, pool, 1x1, 3x3, pool), nine inception modules (3a-5b) with pools between,
    global average pool, dropout, fc. Input ``(N, 3, 224, 224)``; output ``(N, num_classes)``.
    """

    _CONFIG = {
        "inception3a": (192, 64, 96, 128, 16, 32, 32),
        "inception3b": (256, 128, 128, 192, 32, 96, 64),
        "maxpool3": None,
        "inception4a": (480, 192, 96, 208, 16, 48, 64),
        "inception4b": (512, 160, 112, 224, 24, 64, 64),
        "inception4c": (512, 128, 128, 256, 24, 64, 64),
        "inception4d": (512, 112, 144, 288, 32, 64, 64),
        "inception4e": (528, 256, 160, 320, 32, 128, 128),
        "maxpool4": None,
        "inception5a": (832, 256, 160, 320, 32, 128, 128),
        "inception5b": (832, 384, 192, 384, 48, 128, 128),
    }

    def __init__(self, num_classes: int = 1000, *, large_kernel_size: int = 5) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = _conv_bn_relu(64, 64, 1)
        self.conv3 = _conv_bn_relu(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inceptions = nn.Sequential()
        for name, cfg in self._CONFIG.items():
            if cfg is None:
                pool = nn.MaxPool2d(3 if name == "maxpool3" else 2, stride=2, ceil_mode=True)
                self.inceptions.add_module(name, pool)
            else:
                module = InceptionModule(*cfg, large_kernel_size=large_kernel_size)
                self.inceptions.add_module(name, module)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, num_classes)``."""
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.avgpool(self.inceptions(x))
        return self.fc(self.dropout(torch.flatten(x, 1)))


def googlenet(num_classes: int = 1000, *, large_kernel_size: int = 5) -> GoogLeNet:
    """GoogLeNet; ``large_kernel_size=3`` reproduces torchvision's count (6,624,904)."""
    return GoogLeNet(num_classes, large_kernel_size=large_kernel_size)


# ----------------------------------------------------------------------------- MobileNet v1


class DepthwiseSeparable(nn.Module):
    """MobileNet's depthwise-separable block: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU.

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, out_channels, H', W')`` with
    ``H' = floor((H - 1)/stride) + 1``.

    Parameters (no conv bias, 2 per BatchNorm channel): ``9*in + 2*in`` (depthwise, one 3x3
    filter per channel) ``+ in*out + 2*out`` (pointwise); a standard 3x3 convolution would
    need ``9*in*out``.

    Args:
        in_channels: ``C`` of the input (and of the depthwise convolution).
        out_channels: ``C`` of the output.
        stride: stride of the depthwise convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, out_channels, H', W')``."""
        x = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(self.bn2(self.pointwise(x)))


class MobileNetV1(nn.Module):
    """MobileNet v1 (Howard et al., 2017), width multiplier 1.

    Stem conv 3x3/2 (32) then 13 depthwise-separable blocks up to 1024 channels, global
    average pool, fc. Input ``(N, 3, 224, 224)``; output ``(N, num_classes)``.
    """

    _BLOCKS = (
        (32, 64, 1),
        (64, 128, 2),
        (128, 128, 1),
        (128, 256, 2),
        (256, 256, 1),
        (256, 512, 2),
        *((512, 512, 1),) * 5,
        (512, 1024, 2),
        (1024, 1024, 1),
    )

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = _conv_bn_relu_plain(3, 32, stride=2)
        self.blocks = nn.Sequential(*(DepthwiseSeparable(i, o, s) for i, o, s in self._BLOCKS))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, num_classes)``."""
        x = self.avgpool(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def _conv_bn_relu_plain(in_channels: int, out_channels: int, *, stride: int) -> nn.Sequential:
    """3x3 conv (no bias, 'same') + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def mobilenet_v1(num_classes: int = 1000) -> MobileNetV1:
    """MobileNet v1 (4,231,976 parameters for 1000 classes)."""
    return MobileNetV1(num_classes)


# ----------------------------------------------------------------------------- DenseNet


class DenseLayer(nn.Module):
    """One DenseNet-BC layer: BN-ReLU-conv1x1 (``bn_size*growth_rate``) -> BN-ReLU-conv3x3.

    It returns only its ``growth_rate`` *new* feature maps; :class:`DenseBlock` concatenates
    them to its input. Shapes: ``(N, in_channels, H, W)`` -> ``(N, growth_rate, H, W)``.

    Parameters (no conv bias, 2 per BatchNorm channel), with ``b = bn_size*growth_rate``:
    ``2*in + in*b + 2*b + 9*b*growth_rate``.

    Args:
        in_channels: ``C`` of the input (all earlier feature maps of the block).
        growth_rate: new feature maps this layer adds (32 in DenseNet-121).
        bn_size: bottleneck width multiplier (4 in DenseNet-121).
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4) -> None:
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, growth_rate, H, W)`` (the new maps only)."""
        out = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(out)))


class DenseBlock(nn.Module):
    """A dense block: layer ``l`` sees the concatenation ``[x_0, x_1, ..., x_{l-1}]``.

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, in_channels + num_layers*growth_rate, H, W)``.
    Layer ``l`` (from 0) has ``in_channels + l*growth_rate`` inputs; the parameter count is the
    sum of :class:`DenseLayer`'s formula over those.

    Args:
        num_layers: number of dense layers.
        in_channels: ``C`` of the input.
        growth_rate: new feature maps per layer.
        bn_size: bottleneck width multiplier of each layer.
    """

    def __init__(
        self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int = 4
    ) -> None:
        """Add the layers under torchvision's names (the grader loads weights by them):

        ``denselayer1``, ``denselayer2``, ... (from 1), each a :class:`DenseLayer` (whose own
        layers are ``norm1``, ``relu1``, ``conv1``, ``norm2``, ``relu2``, ``conv2``), e.g. with
        ``self.add_module(f"denselayer{i + 1}", DenseLayer(...))``.
        """
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
            self.add_module(f"denselayer{i + 1}", layer)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, in_channels + num_layers*growth_rate, H, W)``."""
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-conv1x1 (halves the channels) -> 2x2 average pool stride 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC (Huang et al., 2017): stem, dense blocks with transitions, BN, pool, fc.

    Input ``(N, 3, 224, 224)``; output ``(N, num_classes)``.
    """

    def __init__(
        self,
        *,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size)
            self.features.add_module(f"denseblock{i + 1}", block)
            channels = block.out_channels
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, num_classes)``."""
        x = self.avgpool(self.relu(self.features(x)))
        return self.classifier(torch.flatten(x, 1))


def densenet121(num_classes: int = 1000, *, growth_rate: int = 32) -> DenseNet:
    """DenseNet-121: dense blocks of 6, 12, 24, 16 layers (7,978,856 parameters for k=32)."""
    return DenseNet(growth_rate=growth_rate, num_classes=num_classes)


# ----------------------------------------------------------------------------- the small backbone


class SmallCNN(nn.Module):
    """The small backbone cnnlab pretrains on its source task (see :mod:`cnnref.data`).

    Three stages of (conv 3x3 + BN + ReLU) x2 + max-pool 2, global average pool, fc.
    ``(N, 3, 32, 32)`` -> 16x16 -> 8x8 -> 4x4 -> ``(N, num_classes)``. The stages are the layer
    groups of discriminative fine-tuning: :meth:`layer_groups` returns them, input side first.

    Args:
        num_classes: outputs of ``fc``.
        widths: channels of the three stages.
    """

    def __init__(
        self, num_classes: int = 8, *, widths: tuple[int, int, int] = (16, 32, 64)
    ) -> None:
        super().__init__()
        stages = []
        channels = 3
        for width in widths:
            stages.append(
                nn.Sequential(
                    _conv_bn_relu_plain(channels, width, stride=1),
                    _conv_bn_relu_plain(width, width, stride=1),
                    nn.MaxPool2d(2),
                )
            )
            channels = width
        self.stage1, self.stage2, self.stage3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> pooled features ``(N, widths[-1])``."""
        x = self.stage3(self.stage2(self.stage1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> logits ``(N, num_classes)``."""
        return self.fc(self.features(x))

    def layer_groups(self) -> list[nn.Module]:
        """``[stage1, stage2, stage3, fc]``: from the input side to the output side."""
        return [self.stage1, self.stage2, self.stage3, self.fc]


# ----------------------------------------------------------------------------- registry


class _Entry(NamedTuple):
    make: Callable[[int], nn.Module]
    default_classes: int
    input_shape: tuple[int, int, int]


ARCHITECTURES: dict[str, _Entry] = {
    "lenet5": _Entry(lambda n: lenet5(n), 10, (1, 32, 32)),
    "alexnet": _Entry(lambda n: alexnet(n), 1000, (3, 224, 224)),
    "vgg16": _Entry(lambda n: vgg16(n), 1000, (3, 224, 224)),
    "googlenet": _Entry(lambda n: googlenet(n), 1000, (3, 224, 224)),
    "resnet18": _Entry(lambda n: resnet(18, n), 1000, (3, 224, 224)),
    "resnet34": _Entry(lambda n: resnet(34, n), 1000, (3, 224, 224)),
    "resnet50": _Entry(lambda n: resnet(50, n), 1000, (3, 224, 224)),
    "resnet101": _Entry(lambda n: resnet(101, n), 1000, (3, 224, 224)),
    "resnet152": _Entry(lambda n: resnet(152, n), 1000, (3, 224, 224)),
    "mobilenet_v1": _Entry(lambda n: mobilenet_v1(n), 1000, (3, 224, 224)),
    "densenet121": _Entry(lambda n: densenet121(n), 1000, (3, 224, 224)),
    "small_cnn": _Entry(lambda n: SmallCNN(n), 8, (3, 32, 32)),
}
"""Every buildable model: name -> (builder, default classes, input shape ``(C, H, W)``)."""

_ALIASES = {
    "lenet": "lenet5",
    "lenet-5": "lenet5",
    "vgg": "vgg16",
    "vgg-16": "vgg16",
    "inception": "googlenet",
    "inception_v1": "googlenet",
    "mobilenet": "mobilenet_v1",
    "mobilenetv1": "mobilenet_v1",
    "densenet": "densenet121",
    "densenet-121": "densenet121",
}


def _entry(name: str) -> tuple[str, _Entry]:
    key = name.strip().lower().replace(" ", "")
    key = _ALIASES.get(key, key)
    if key.startswith("resnet-"):
        key = "resnet" + key[len("resnet-") :]
    if key not in ARCHITECTURES:
        import difflib

        close = difflib.get_close_matches(key, ARCHITECTURES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown architecture {name!r}{hint} Known: {', '.join(ARCHITECTURES)}")
    return key, ARCHITECTURES[key]


def build(name: str, num_classes: int | None = None) -> nn.Module:
    """Build an architecture by name, on the current default device.

    Args:
        name: one of :data:`ARCHITECTURES` (``"resnet50"``, ``"vgg16"``, ...); case and the
            hyphen of ``"ResNet-50"`` are forgiven.
        num_classes: outputs of the classifier; ``None`` gives the published default
            (1000 for the ImageNet models, 10 for LeNet-5, 8 for ``small_cnn``).

    Returns:
        The model (in training mode, freshly initialised).

    Raises:
        ValueError: the name is unknown (the message lists the known names) or
            ``num_classes < 1``.
    """
    _, entry = _entry(name)
    n = entry.default_classes if num_classes is None else num_classes
    if n < 1:
        raise ValueError(f"num_classes must be at least 1, got {n}")
    return entry.make(n)


def count_params(name: str, num_classes: int | None = None, *, trainable_only: bool = False) -> int:
    """The number of parameters of an architecture, built on the meta device (no memory).

    Args:
        name: as for :func:`build`.
        num_classes: as for :func:`build`.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The total number of parameter elements (BatchNorm running statistics are buffers,
        not parameters, and are not counted, as in torchvision).
    """
    with torch.device("meta"):
        model = build(name, num_classes)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------- summary


class SummaryRow(NamedTuple):
    """One row of :func:`summary`.

    Attributes:
        name: dotted module name (``"layer2.0"``).
        kind: the module's class name (``"BasicBlock"``).
        output_shape: ``(C, H, W)`` or ``(D,)`` for one sample; ``None`` if the module was not
            called by the forward pass.
        params: parameters owned by this row (its whole subtree).
    """

    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    params: int


class ModelSummary(NamedTuple):
    """The result of :func:`summary`: ``rows`` partition the parameters, so their ``params``
    sum to ``total_params``."""

    rows: list[SummaryRow]
    total_params: int
    input_shape: tuple[int, ...]

    def format(self) -> str:
        """A fixed-width text table (name, type, output shape, parameters)."""
        header = ("layer", "type", "output shape", "params")
        body = [
            (
                r.name,
                r.kind,
                "-" if r.output_shape is None else "x".join(map(str, r.output_shape)),
                f"{r.params:,}",
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]
        lines = [
            "  ".join(
                cell.rjust(w) if i == 3 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=False))
            ).rstrip()
            for row in [header, *body]
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"total params: {self.total_params:,}")
        return "\n".join(lines)


def summary(
    model: nn.Module | str,
    input_shape: tuple[int, ...] | None = None,
    *,
    depth: int = 1,
    num_classes: int | None = None,
) -> ModelSummary:
    """Output shape and parameter count per layer (``depth=1``) or per block (``depth=2``, ...).

    A model given by name is built on the meta device and run there, so even VGG16 costs no
    memory; a model object is copied to the meta device first (the original is untouched).
    The rows are the modules at exactly ``depth`` levels below the model, plus shallower
    leaves, in registration order; with parameters registered directly on a container (rare)
    an extra ``"<name> (own)"`` row keeps the sum exact.

    Args:
        model: a name for :func:`build` or an ``nn.Module``.
        input_shape: ``(C, H, W)`` of one sample; defaults to the architecture's own
            (``(3, 224, 224)`` for ImageNet models); required for a module without a default.
        depth: how deep to list (1: top-level children; 2: their children, e.g. ResNet blocks).
        num_classes: as for :func:`build`, for a model given by name.

    Returns:
        :class:`ModelSummary` with ``rows``, ``total_params`` and ``input_shape``.
    """
    import copy

    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if isinstance(model, str):
        _, entry = _entry(model)
        input_shape = input_shape or entry.input_shape
        with torch.device("meta"):
            net = build(model, num_classes)
    else:
        if input_shape is None:
            raise ValueError("input_shape (C, H, W) is required for a model given as a module")
        net = copy.deepcopy(model).to("meta")
    net.eval()

    rows: list[tuple[str, nn.Module]] = []
    own: list[tuple[str, int]] = []

    def visit(prefix: str, module: nn.Module, level: int) -> None:
        direct = sum(p.numel() for p in module.parameters(recurse=False))
        children = list(module.named_children())
        if level > 0 and (level == depth or not children):
            rows.append((prefix, module))
            return
        if direct and level > 0:
            own.append((prefix, direct))
        elif direct:
            own.append(("(model)", direct))
        for child_name, child in children:
            visit(f"{prefix}.{child_name}" if prefix else child_name, child, level + 1)

    visit("", net, 0)
    shapes: dict[int, tuple[int, ...]] = {}

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            shapes[id(module)] = tuple(output.shape[1:])

    hooks = [m.register_forward_hook(record) for _, m in rows]
    try:
        with torch.no_grad():
            net(torch.zeros((1, *input_shape), device="meta"))
    finally:
        for h in hooks:
            h.remove()
    out_rows = [
        SummaryRow(
            name, type(m).__name__, shapes.get(id(m)), sum(p.numel() for p in m.parameters())
        )
        for name, m in rows
    ]
    out_rows += [SummaryRow(f"{name} (own)", "Parameter", None, n) for name, n in own]
    total = sum(p.numel() for p in net.parameters())
    return ModelSummary(out_rows, total, tuple(input_shape))
