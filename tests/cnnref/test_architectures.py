"""Architectures: published parameter counts, block shapes and formulas, the summary table."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from cnnref import architectures as A

# torchvision's published counts (1000 classes); LeNet-5 and MobileNet v1 from their papers'
# layer lists (MobileNet v1 without Keras' non-trainable BN statistics).
PUBLISHED = {
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "densenet121": 7_978_856,
    "lenet5": 61_706,
    "mobilenet_v1": 4_231_976,
    "googlenet": 7_005_832,
}


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name,expected", sorted(PUBLISHED.items()))
def test_count_matches_published(name, expected):
    start = time.perf_counter()
    assert A.count_params(name) == expected
    assert time.perf_counter() - start < 1.0, f"count_params({name!r}) is too slow"


def test_googlenet_with_torchvision_kernel_matches_torchvision_count():
    with torch.device("meta"):
        assert _n(A.googlenet(large_kernel_size=3)) == 6_624_904


def test_count_builds_on_meta_and_aliases_work():
    assert A.count_params("ResNet-50") == A.count_params("resnet50")
    assert A.count_params("resnet18", num_classes=10) == 11_689_512 - 512 * 990 - 990


def test_unknown_name_says_did_you_mean():
    with pytest.raises(ValueError, match="did you mean 'resnet50'"):
        A.build("resnet05")


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        A.build("alexnet", num_classes=0)


@pytest.mark.parametrize("name", ["lenet5", "small_cnn", "resnet18", "mobilenet_v1"])
def test_forward_shape_on_real_tensor(name):
    entry = A.ARCHITECTURES[name]
    c, h, w = entry.input_shape
    size = min(h, 64)
    model = A.build(name, num_classes=7).eval()
    x = torch.randn(2, c, size if name != "lenet5" else 32, size if name != "lenet5" else 32)
    with torch.no_grad():
        assert model(x).shape == (2, 7)


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "googlenet", "densenet121", "resnet152"])
def test_big_models_forward_on_meta(name):
    with torch.device("meta"):
        model = A.build(name).eval()
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)


# ------------------------------------------------------------------ blocks


def test_vgg_block_shape_and_formula():
    block = A.vgg_block(64, 128, 2)
    assert block(torch.randn(1, 64, 15, 14)).shape == (1, 128, 7, 7)
    assert _n(block) == (9 * 64 + 1) * 128 + (9 * 128 + 1) * 128
    with pytest.raises(ValueError, match="num_convs"):
        A.vgg_block(3, 8, 0)


@pytest.mark.parametrize("cin,cout,stride", [(64, 64, 1), (64, 128, 2), (32, 48, 1)])
def test_basic_block(cin, cout, stride):
    block = A.BasicBlock(cin, cout, stride)
    assert block(torch.randn(2, cin, 9, 9)).shape == (
        2,
        cout,
        (9 - 1) // stride + 1,
        (9 - 1) // stride + 1,
    )
    expected = 9 * cin * cout + 9 * cout * cout + 4 * cout
    if stride != 1 or cin != cout:
        expected += cin * cout + 2 * cout
    assert _n(block) == expected
    assert (block.downsample is None) == (stride == 1 and cin == cout)


@pytest.mark.parametrize("cin,width,stride", [(256, 64, 1), (256, 128, 2), (64, 64, 1)])
def test_bottleneck(cin, width, stride):
    block = A.Bottleneck(cin, width, stride)
    out = 4 * width
    assert block(torch.randn(1, cin, 8, 8)).shape == (
        1,
        out,
        (8 - 1) // stride + 1,
        (8 - 1) // stride + 1,
    )
    expected = cin * width + 9 * width * width + width * out + 2 * (2 * width + out)
    if stride != 1 or cin != out:
        expected += cin * out + 2 * out
    assert _n(block) == expected


def test_residual_identity_when_convs_are_zero():
    block = A.BasicBlock(8, 8).eval()
    for p in block.parameters():
        nn.init.zeros_(p)
    x = torch.randn(1, 8, 5, 5)
    assert torch.equal(block(x), torch.relu(x))


def test_dense_layer_and_block():
    layer = A.DenseLayer(64, 32, 4)
    assert layer(torch.randn(1, 64, 6, 6)).shape == (1, 32, 6, 6)
    b = 4 * 32
    assert _n(layer) == 2 * 64 + 64 * b + 2 * b + 9 * b * 32
    block = A.DenseBlock(6, 64, 32)
    x = torch.randn(1, 64, 6, 6)
    y = block(x)
    assert y.shape == (1, 64 + 6 * 32, 6, 6)
    assert torch.equal(y[:, :64], x), "a dense block must pass its input through (concatenation)"
    assert _n(block) == sum(_n(A.DenseLayer(64 + i * 32, 32, 4)) for i in range(6))


def test_densenet_growth_rate_is_a_parameter():
    with torch.device("meta"):
        small = A.densenet121(growth_rate=12)
    assert _n(small) < A.count_params("densenet121")
    assert (
        small.classifier.in_features
        == (((64 + 6 * 12) // 2 + 12 * 12) // 2 + 24 * 12) // 2 + 16 * 12
    )


def test_inception_module_shape_and_formula():
    m = A.InceptionModule(192, 64, 96, 128, 16, 32, 32)
    assert m(torch.randn(1, 192, 7, 9)).shape == (1, 64 + 128 + 32 + 32, 7, 9)
    convs = 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    assert _n(m) == convs + 2 * (64 + 96 + 128 + 16 + 32 + 32)
    with pytest.raises(ValueError, match="odd"):
        A.InceptionModule(4, 1, 1, 1, 1, 1, 1, large_kernel_size=4)


def test_depthwise_separable():
    m = A.DepthwiseSeparable(32, 64, 2)
    assert m(torch.randn(1, 32, 9, 9)).shape == (1, 64, 5, 5)
    assert _n(m) == 9 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert m.depthwise.groups == 32


# ------------------------------------------------------------------ summary


@pytest.mark.parametrize(
    "name,depth", [("resnet50", 2), ("vgg16", 1), ("densenet121", 2), ("lenet5", 1)]
)
def test_summary_rows_sum_to_total(name, depth):
    s = A.summary(name, depth=depth)
    assert s.total_params == A.count_params(name)
    assert sum(r.params for r in s.rows) == s.total_params
    assert s.rows[-1].output_shape == ((1000,) if name != "lenet5" else (10,))


def test_summary_shapes_of_resnet_stages():
    rows = {r.name: r for r in A.summary("resnet18", depth=2).rows}
    assert rows["conv1"].output_shape == (64, 112, 112)
    assert rows["layer2.0"].output_shape == (128, 28, 28)
    assert rows["layer4.1"].output_shape == (512, 7, 7)
    assert rows["layer2.0"].kind == "BasicBlock"
    assert "total params: 11,689,512" in A.summary("resnet18").format()


def test_summary_of_module_leaves_original_untouched():
    model = A.SmallCNN(5)
    before = [p.clone() for p in model.parameters()]
    s = A.summary(model, (3, 32, 32))
    assert s.total_params == _n(model)
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=False))
    with pytest.raises(ValueError, match="input_shape"):
        A.summary(model)
