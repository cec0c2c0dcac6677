"""Blocks (vgg_block, BasicBlock, DenseBlock) compared by value, through the real sandbox.

The reference's weights are loaded into the student's block by torchvision's names, and
outputs and input gradients are compared in eval and in train mode. So every known block
mistake is recognised by value and named; a block with merely the right parameter count and
output shape scores 0; a forward pass that raises shows its real error with file and line; a
weight whose name or shape does not fit is named with both shapes; and correct blocks written
another way (other container names, functional ReLUs, in-place additions) pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader import engine, registry
from grader.results import Status
from grader.submission import load_submission

CNNREF = Path(__file__).resolve().parents[2] / "cnnref"
TORCH_MISTAKES = Path(__file__).resolve().parents[1] / "fixtures" / "submissions" / "torch_mistakes"
BLOCKS = ("vgg_block", "BasicBlock", "DenseBlock")
SEED = 2026


@pytest.fixture(scope="module")
def box():
    from grader.sandbox import Sandbox

    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def prepared() -> dict[str, engine.PreparedExercise]:
    return {name: engine.prepare(registry.get(name), SEED) for name in BLOCKS}


def _submission(tmp: Path, code: str, *, with_reference: bool = True) -> Path:
    """architectures.py: the reference module (its DenseLayer and helpers) plus ``code``,
    whose definitions replace the reference's."""
    folder = tmp / "sub"
    folder.mkdir()
    base = (CNNREF / "architectures.py").read_text() if with_reference else ""
    (folder / "architectures.py").write_text(base + "\n\n" + code)
    return folder


def _grade(box, folder: Path, prepared, *names: str):
    items = [prepared[n] for n in names]
    return engine.grade_prepared(load_submission(folder), items, seed=SEED, sandbox=box).exercises


def _block_fixtures() -> list[tuple[str, str, Path]]:
    out = []
    for path in sorted(TORCH_MISTAKES.glob("*__*.py")):
        exercise, slug = path.stem.split("__")
        if exercise in BLOCKS:
            out.append((exercise, slug, path))
    return out


def test_every_known_block_mistake_has_a_fixture():
    have = {(e, s) for e, s, _ in _block_fixtures()}
    assert have == {(n, m.name) for n in BLOCKS for m in registry.get(n).mistakes}
    for wanted in [
        ("BasicBlock", "stride_on_second_conv"),
        ("BasicBlock", "relu_before_addition"),
        ("BasicBlock", "relu_after_addition_missing"),
        ("BasicBlock", "projection_missing"),
        ("BasicBlock", "shortcut_stride_missing"),
        ("DenseBlock", "reversed_concatenation"),
        ("vgg_block", "pool_missing"),
    ]:
        assert wanted in have


@pytest.mark.parametrize(
    ("exercise", "slug", "path"),
    _block_fixtures(),
    ids=[f"{e}-{s}" for e, s, _ in _block_fixtures()],
)
def test_each_block_mistake_is_named_through_the_sandbox(
    box, prepared, tmp_path, exercise, slug, path
):
    folder = _submission(tmp_path, path.read_text())
    (result,) = _grade(box, folder, prepared, exercise)
    assert result.mistake == slug, result.feedback
    assert prepared[exercise].mistake_messages[slug] in result.feedback
    assert result.status in (Status.FAILED, Status.ERROR)
    assert result.score < result.max_score


def test_the_reference_blocks_pass(box, prepared, tmp_path):
    folder = _submission(tmp_path, "")
    results = _grade(box, folder, prepared, *BLOCKS)
    assert [r.status for r in results] == [Status.PASSED] * 3, [r.feedback for r in results]


# the right parameters (names, shapes, count) and the right output shape, but not the block
SHAPE_ONLY = """
import torch
from torch import nn


def vgg_block(in_channels, out_channels, num_convs):
    layers = []
    for i in range(num_convs):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1),
                   nn.ReLU()]
    layers.append(nn.MaxPool2d(2))

    class Shape(nn.Sequential):
        def forward(self, x):
            return torch.zeros(x.shape[0], out_channels, x.shape[2] // 2, x.shape[3] // 2)

    return Shape(*layers)


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return self.bn2(self.conv2(self.conv1(x) * 0))


class DenseBlock(nn.Module):
    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size))
        self.out = in_channels + num_layers * growth_rate

    def forward(self, x):
        return x.new_ones(x.shape[0], self.out, *x.shape[2:])
"""


def test_the_right_parameter_count_and_output_shape_alone_score_zero(box, prepared, tmp_path):
    folder = _submission(tmp_path, SHAPE_ONLY)
    results = _grade(box, folder, prepared, *BLOCKS)
    for r in results:
        assert r.score == 0 and r.status is Status.FAILED, (r.name, r.feedback)
        assert "out_eval[" in r.feedback and "expected" in r.feedback


def test_a_forward_that_raises_shows_the_real_error_with_its_line(box, prepared, tmp_path):
    code = (TORCH_MISTAKES / "BasicBlock__projection_missing.py").read_text()
    folder = _submission(tmp_path, code)
    (result,) = _grade(box, folder, prepared, "BasicBlock")
    assert result.status is Status.ERROR
    assert "the forward pass raised RuntimeError in forward (architectures.py, line " in (
        result.feedback
    )
    assert "must match the size of tensor b" in result.feedback
    assert "-1" not in result.feedback and "out_shape" not in result.feedback


def test_a_weight_of_another_shape_is_named_with_both_shapes(box, prepared, tmp_path):
    code = (CNNREF / "architectures.py").read_text()
    start = code.index("class BasicBlock(nn.Module):")
    end = code.index("class Bottleneck(nn.Module):")
    block = code[start:end].replace(
        "out_channels, 3, stride=stride, padding=1, bias=False)",
        "out_channels, 5, stride=stride, padding=2, bias=False)",
    )
    assert "5, stride=stride, padding=2" in block
    folder = _submission(tmp_path, block)
    (result,) = _grade(box, folder, prepared, "BasicBlock")
    case = prepared["BasicBlock"].cases[0].inputs["args"]
    c_in, c_out = case["in_channels"], case["out_channels"]
    assert (
        f"conv1.weight has shape ({c_out}, {c_in}, 5, 5), expected ({c_out}, {c_in}, 3, 3)"
        in result.feedback
    ), result.feedback
    assert "loaded into your block by name" in result.feedback


# correct blocks written other ways: other container names, functional ReLUs, in-place adds
VALID_VARIANTS = """
import torch
import torch.nn.functional as F
from torch import nn


class _Convs(nn.Module):
    def __init__(self, in_channels, out_channels, num_convs):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size=3,
                      padding="same")
            for i in range(num_convs))

    def forward(self, x, **unused):
        for conv in self.convs:
            x = F.relu(conv(x))
        return F.max_pool2d(x, 2)


def vgg_block(in_channels, out_channels, num_convs, **extra):
    return _Convs(in_channels, out_channels, num_convs)


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class DenseBlock(nn.Module):
    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4):
        super().__init__()
        self.layers = nn.ModuleList(
            [DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
             for i in range(num_layers)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x
"""


def test_correct_blocks_written_other_ways_pass(box, prepared, tmp_path):
    folder = _submission(tmp_path, VALID_VARIANTS)
    results = _grade(box, folder, prepared, *BLOCKS)
    assert [r.status for r in results] == [Status.PASSED] * 3, [r.feedback for r in results]
