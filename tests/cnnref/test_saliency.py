"""saliency_map: equals a hand-written autograd computation, leaves the model as found."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnref import saliency as S
from cnnref.architectures import SmallCNN


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 6 * 5, 5),
    )
    # non-trivial running statistics so that train/eval mode matters
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 6, 5) * 3 + 1)
    return model


def _by_hand(model: nn.Module, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """One image at a time: backward of the chosen logit, |grad| per channel."""
    model = __import__("copy").deepcopy(model).eval()
    out = []
    for image, c in zip(images, classes, strict=True):
        x = image[None].clone().requires_grad_(True)
        logits = model(x)
        one_hot = torch.zeros_like(logits)
        one_hot[0, c] = 1.0  # d score / d logits: 1 for class c, 0 elsewhere (the lecture's step 3)
        logits.backward(one_hot)
        out.append(x.grad[0].abs())
    return torch.stack(out)


@pytest.mark.parametrize("reduce", ["max", "mean", "none"])
def test_equals_hand_written_autograd(reduce):
    model = _model()
    images = torch.rand(4, 3, 6, 5, dtype=torch.float32)
    target = torch.tensor([0, 3, 4, 3])
    expected = _by_hand(model, images, target.tolist())
    expected = {"max": expected.amax(1), "mean": expected.mean(1), "none": expected}[reduce]
    got = S.saliency_map(model, images, target, reduce=reduce)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_int_target_means_same_class_for_all():
    model = _model()
    images = torch.rand(3, 3, 6, 5)
    torch.testing.assert_close(
        S.saliency_map(model, images, 2), S.saliency_map(model, images, torch.tensor([2, 2, 2]))
    )
    assert not torch.equal(S.saliency_map(model, images, 2), S.saliency_map(model, images, 1))


def test_logits_not_softmax():
    model = _model()
    images = torch.rand(2, 3, 6, 5)
    got = S.saliency_map(model, images, 1, reduce="none")
    probs_model = nn.Sequential(__import__("copy").deepcopy(model), nn.Softmax(dim=1))
    via_softmax = S.saliency_map(probs_model, images, 1, reduce="none")
    assert not torch.allclose(got, via_softmax)


def test_model_state_left_as_found():
    model = _model()
    model.train()
    model[1].eval()  # a mixed state must come back exactly
    model[5].weight.requires_grad_(False)
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)
    before_modes = [m.training for m in model.modules()]
    before_params = [p.detach().clone() for p in model.parameters()]
    before_stats = model[1].running_mean.clone()
    images = torch.rand(2, 3, 6, 5)
    images_copy = images.clone()
    S.saliency_map(model, images, torch.tensor([1, 2]))
    assert [m.training for m in model.modules()] == before_modes
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 7.0))
    assert model[0].bias.grad is None and model[5].bias.grad is None
    assert model[5].weight.requires_grad is False and model[0].weight.requires_grad is True
    assert all(torch.equal(a, b) for a, b in zip(before_params, model.parameters(), strict=True))
    assert torch.equal(model[1].running_mean, before_stats), "BN statistics must not move"
    assert torch.equal(images, images_copy) and images.grad is None


def test_mode_restored_even_on_error():
    model = _model().train()
    with pytest.raises(ValueError, match="outside"):
        S.saliency_map(model, torch.rand(1, 3, 6, 5), 9)
    assert all(m.training for m in model.modules())


def test_works_under_no_grad():
    model = _model()
    with torch.no_grad():
        out = S.saliency_map(model, torch.rand(2, 3, 6, 5), 0)
    assert out.shape == (2, 6, 5) and bool((out > 0).any())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"reduce": "sum"}, "reduce must be one of"),
        ({"images": torch.rand(3, 6, 5)}, "rank 4"),
        ({"images": torch.ones(1, 3, 6, 5, dtype=torch.int64)}, "floating point"),
        ({"target": 5}, "outside"),
        ({"target": -1}, "outside"),
        ({"target": torch.tensor([0, 1, 2])}, r"shape \(2,\)"),
        ({"target": torch.tensor([0.0, 1.0])}, "integer"),
        ({"target": 1.0}, "int or a LongTensor"),
    ],
)
def test_bad_input_is_a_clear_value_error(kwargs, match):
    args = {"images": torch.rand(2, 3, 6, 5), "target": 0, "reduce": "max", **kwargs}
    with pytest.raises(ValueError, match=match):
        S.saliency_map(_model(), args["images"], args["target"], reduce=args["reduce"])


def test_mask_share_and_spearman():
    sal = torch.zeros(2, 4, 4)
    sal[0, :2, :2] = 1.0
    sal[1] = 1.0
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, :2, :2] = True
    torch.testing.assert_close(S.saliency_mask_share(sal, masks), torch.tensor([1.0, 0.25]))
    a = torch.arange(16.0).reshape(1, 4, 4)
    torch.testing.assert_close(
        S.spearman_per_image(a, a * 2 + 1), torch.tensor([1.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        S.spearman_per_image(a, -a), torch.tensor([-1.0], dtype=torch.float64)
    )


def test_randomized_copy_changes_weights_not_original():
    model = SmallCNN(3)
    original = [p.detach().clone() for p in model.parameters()]
    clone = S.randomized_copy(model, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(original, model.parameters(), strict=True))
    assert not torch.equal(clone.stage1[0][0].weight, model.stage1[0][0].weight)
    again = S.randomized_copy(model, seed=1)
    assert torch.equal(clone.fc.weight, again.fc.weight), "same seed, same re-initialisation"


def test_grid_png_written_atomically(tmp_path):
    images = torch.rand(3, 3, 8, 8)
    sal = torch.rand(3, 8, 8)
    out = S.save_saliency_grid(tmp_path / "grid.png", images, sal, titles=["a", "b", "c"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    with pytest.raises(ValueError, match="does not exist"):
        S.save_saliency_grid(tmp_path / "nope" / "g.png", images, sal)
