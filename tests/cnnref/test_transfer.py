"""freeze / replace_head / discriminative_param_groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnref import architectures as A
from cnnref import transfer as T


def test_frozen_params_do_not_change_and_head_does():
    torch.manual_seed(0)
    model = A.SmallCNN(8)
    T.freeze(model)
    T.replace_head(model, 3)
    T.set_batchnorm_eval(model.train())
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if "fc" not in n}
    stats_before = model.stage1[0][1].running_mean.clone()
    head_before = model.fc.weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    for _ in range(2):
        loss = nn.functional.cross_entropy(
            model(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, p in model.named_parameters():
        if "fc" not in name:
            assert torch.equal(p, frozen_before[name]), name
            assert p.grad is None
    assert not torch.equal(model.fc.weight, head_before)
    assert torch.equal(model.stage1[0][1].running_mean, stats_before), "BN in eval keeps stats"


def test_freeze_returns_module_and_unfreeze():
    m = nn.Linear(2, 2)
    assert T.freeze(m) is m and not any(p.requires_grad for p in m.parameters())
    assert all(p.requires_grad for p in T.unfreeze(m).parameters())


def test_set_batchnorm_eval_only_frozen():
    model = A.SmallCNN(2).train()
    T.freeze(model.stage1)
    T.set_batchnorm_eval(model)
    assert not model.stage1[0][1].training and model.stage2[0][1].training
    T.set_batchnorm_eval(model, only_frozen=False)
    assert not model.stage2[0][1].training


@pytest.mark.parametrize(
    "build,attr",
    [
        (lambda: A.SmallCNN(8), "fc"),
        (lambda: A.build("alexnet"), "classifier.6"),
        (lambda: A.build("densenet121"), "classifier"),
        (lambda: A.build("lenet5"), "11"),
    ],
)
def test_replace_head_finds_the_last_linear(build, attr):
    with torch.device("meta"):
        model = build()
    T.freeze(model)
    old = model.get_submodule(attr)
    assert T.replace_head(model, 5) is model
    new = model.get_submodule(attr)
    assert new is not old and isinstance(new, nn.Linear)
    assert (new.in_features, new.out_features) == (old.in_features, 5)
    assert new.weight.requires_grad and new.bias.requires_grad
    assert new.weight.device == old.weight.device


def test_replace_head_errors():
    with pytest.raises(ValueError, match="no nn.Linear"):
        T.replace_head(nn.Sequential(nn.Conv2d(1, 1, 1)), 3)
    with pytest.raises(ValueError, match="positive int"):
        T.replace_head(A.SmallCNN(2), 0)


def test_lr_ratios_exact():
    model = A.SmallCNN(4)
    groups = T.discriminative_param_groups(model.layer_groups(), 1e-2, factor=3.0)
    assert [g["lr"] for g in groups] == [1e-2 / 27, 1e-2 / 9, 1e-2 / 3, 1e-2]
    for g, module in zip(groups, model.layer_groups(), strict=True):
        assert [id(p) for p in g["params"]] == [id(p) for p in module.parameters()]
    opt = torch.optim.Adam(groups, lr=1.0)
    assert [g["lr"] for g in opt.param_groups] == [1e-2 / 27, 1e-2 / 9, 1e-2 / 3, 1e-2]
    ten = T.discriminative_param_groups([model.stage3, model.fc], 0.1, factor=10)
    assert ten[0]["lr"] == pytest.approx(0.01, rel=0, abs=1e-18) and ten[1]["lr"] == 0.1


def test_module_list_is_a_list_of_groups():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    assert [g["lr"] for g in T.discriminative_param_groups(layers, 0.5, factor=5.0)] == [0.1, 0.5]


def test_frozen_groups_are_left_out():
    model = A.SmallCNN(4)
    T.freeze(model.stage1)
    groups = T.discriminative_param_groups(model.layer_groups(), 1.0, factor=2.0)
    assert [g["lr"] for g in groups] == [0.25, 0.5, 1.0]


@pytest.mark.parametrize(
    "args,match",
    [
        (([], 0.1), "non-empty"),
        ((nn.Linear(2, 2), 0.1), "non-empty"),
        (([nn.Linear(2, 2)], 0.0), "base_lr"),
        (([nn.Linear(2, 2)], 0.1, 0.0), "factor"),
        (([nn.Linear(2, 2)], 0.1, float("nan")), "factor"),
        (([nn.ReLU()], 0.1), "no parameters"),
    ],
)
def test_param_group_validation(args, match):
    with pytest.raises(ValueError, match=match):
        T.discriminative_param_groups(*args)


def test_shared_parameter_and_small_factor():
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="both group 0 and group 1"):
        T.discriminative_param_groups([lin, lin], 0.1)
    with pytest.warns(UserWarning, match="LARGER"):
        T.discriminative_param_groups([nn.Linear(2, 2), nn.Linear(2, 2)], 0.1, factor=0.5)
