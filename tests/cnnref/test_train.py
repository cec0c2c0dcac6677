"""The fine-tuning loop: device choice, AMP switch, determinism, frozen BatchNorm."""

from __future__ import annotations

import pytest
import torch

from cnnref import data, train, transfer
from cnnref.architectures import SmallCNN


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(train, "_cuda_available", lambda: False)
    monkeypatch.setattr(train, "_mps_available", lambda: False)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, no_gpu):
    assert train.select_device("auto") == torch.device("cpu")
    monkeypatch.setattr(train, "_mps_available", lambda: True)
    assert train.select_device("auto") == torch.device("mps")
    monkeypatch.setattr(train, "_cuda_available", lambda: True)
    assert train.select_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_missing_device_is_a_typed_error(no_gpu, name):
    with pytest.raises(train.DeviceUnavailableError, match="not available.*use device='cpu'"):
        train.select_device(name)
    assert issubclass(train.DeviceUnavailableError, RuntimeError)


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(train, "_cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert train.select_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(train.DeviceUnavailableError, match="only 1 CUDA"):
        train.select_device("cuda:3")


def test_bad_device_name():
    with pytest.raises(ValueError, match="not a device"):
        train.select_device("gpu-please")


def test_amp_only_on_cuda():
    assert train._use_amp("auto", torch.device("cpu")) is False
    assert train._use_amp("auto", torch.device("cuda")) is True
    assert train._use_amp(False, torch.device("cuda")) is False
    with pytest.raises(ValueError, match="only used on cuda"):
        train._use_amp(True, torch.device("cpu"))


def test_fit_with_missing_device_fails_before_touching_model(no_gpu):
    model = SmallCNN(2)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(train.DeviceUnavailableError):
        train.fit(
            model, torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1]), epochs=1, device="cuda"
        )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def _tiny_run(seed: int) -> tuple[train.FitResult, SmallCNN]:
    ds = data.target_task(shots=4, n_test_per_class=4, seed=0)
    torch.manual_seed(123)
    model = SmallCNN(5, widths=(4, 8, 8))
    result = train.fit(
        model,
        ds.train.images,
        ds.train.labels,
        epochs=3,
        batch_size=8,
        augment=True,
        schedule="onecycle",
        seed=seed,
        threads=1,
        device="cpu",
        progress=False,
        eval_data=(ds.test.images, ds.test.labels),
    )
    return result, model


@pytest.mark.slow
def test_deterministic_on_cpu_for_a_seed():
    a, model_a = _tiny_run(0)
    b, model_b = _tiny_run(0)
    c, _ = _tiny_run(1)
    assert a.losses == b.losses
    assert all(
        torch.equal(p, q) for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True)
    )
    assert a.losses != c.losses
    assert a.device == "cpu" and a.amp is False
    assert 0.0 <= a.eval_accuracy <= 1.0 and len(a.losses) == 3


def test_fit_restores_thread_count_and_rng():
    before = torch.get_num_threads()
    model = SmallCNN(2, widths=(4, 4, 4))
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    train.fit(model, x, y, epochs=1, augment=True, threads=1, device="cpu", progress=False)
    assert torch.get_num_threads() == before
    assert torch.equal(torch.rand(3), expected), "fit must not move the caller's RNG"


def test_fit_learns_something():
    torch.manual_seed(0)
    x = torch.rand(48, 3, 12, 12)
    y = (x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))).long()
    model = SmallCNN(2, widths=(4, 8, 8))
    result = train.fit(
        model, x, y, epochs=12, lr=2e-2, batch_size=16, device="cpu", progress=False, threads=1
    )
    assert result.losses[-1] < result.losses[0]
    assert result.train_accuracy > 0.8


def test_frozen_batchnorm_keeps_source_statistics():
    model = SmallCNN(3, widths=(4, 8, 8))
    transfer.freeze(model)
    transfer.replace_head(model, 2)
    stats = [b.clone() for b in model.buffers()]
    train.fit(
        model,
        torch.rand(8, 3, 32, 32) * 5,
        torch.tensor([0, 1] * 4),
        epochs=1,
        device="cpu",
        progress=False,
    )
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))


def test_batchnorm_eval_option_keeps_statistics_of_trainable_layers():
    model = SmallCNN(2, widths=(4, 8, 8))
    stats = [b.clone() for b in model.buffers()]
    args = (torch.rand(8, 3, 32, 32) * 5, torch.tensor([0, 1] * 4))
    train.fit(model, *args, epochs=1, device="cpu", progress=False, batchnorm_eval=True, threads=1)
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))
    train.fit(model, *args, epochs=1, device="cpu", progress=False, threads=1)
    assert not all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"schedule": "cosine"}, "schedule"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_fit_bad_arguments(kwargs, match):
    args = {"epochs": 1, "device": "cpu", "progress": False, "threads": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        train.fit(SmallCNN(2), torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), **args)


def test_fit_everything_frozen():
    model = transfer.freeze(SmallCNN(2))
    with pytest.raises(ValueError, match="nothing to train"):
        train.fit(model, torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), epochs=1, progress=False)


def test_pretrain_writes_checkpoint_atomically(tmp_path):
    out = tmp_path / "ck.pt"
    result = train.pretrain(
        seed=1, epochs=1, n_per_class=8, n_test_per_class=4, out=out, progress=False
    )
    state = torch.load(out, weights_only=True)
    assert set(state) == set(result.model.state_dict())
    meta = transfer.pretrained_info(out)
    assert meta["seed"] == 1 and meta["epochs"] == 1
    assert meta["source_accuracy"] == round(result.source_accuracy, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json", "ck.pt"]
    loaded = transfer.load_pretrained(out)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.model(x))
    with pytest.raises(ValueError, match=r"\.pt"):
        train.pretrain(epochs=1, out=tmp_path / "ck.bin", progress=False)


@pytest.mark.slow
def test_pretrain_same_seed_same_checkpoint():
    kwargs = {"epochs": 2, "n_per_class": 6, "n_test_per_class": 3, "progress": False, "threads": 1}
    a = train.pretrain(seed=5, **kwargs)
    b = train.pretrain(seed=5, **kwargs)
    c = train.pretrain(seed=6, **kwargs)
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert a.source_accuracy == b.source_accuracy
    assert not torch.equal(state_a["fc.weight"], c.model.state_dict()["fc.weight"])
