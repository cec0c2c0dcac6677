"""The shipped checkpoint: small, loads with weights_only=True, reaches its stated accuracy."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cnnref import data, train, transfer
from grader.cli import main


def test_checkpoint_is_small_and_has_metadata():
    path = transfer.checkpoint_path()
    assert path.is_file(), "run `cnnlab pretrain` to create the shipped checkpoint"
    assert path.stat().st_size < 1_000_000
    meta = json.loads(path.with_suffix(".json").read_text())
    for key in ("seed", "epochs", "source_accuracy", "command", "classes"):
        assert key in meta
    assert meta["classes"] == list(data.SOURCE_CLASSES)


def test_loads_with_weights_only():
    state = torch.load(transfer.checkpoint_path(), weights_only=True, map_location="cpu")
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model = transfer.load_pretrained()
    assert not model.training
    assert model.fc.out_features == len(data.SOURCE_CLASSES)


def test_reaches_stated_source_accuracy_on_fresh_images():
    stated = transfer.pretrained_info()["source_accuracy"]
    fresh = data.source_task(n_per_class=100, seed=987654, split="test")  # never seen in training
    accuracy = train.evaluate(transfer.load_pretrained(), fresh.images, fresh.labels, device="cpu")
    # 800 images: the binomial standard error is about 1 point; allow 4
    assert accuracy >= stated - 0.04, (accuracy, stated)
    assert accuracy > 0.8


def test_saliency_command_writes_png(tmp_path):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(main, ["saliency", "--out", str(out), "-n", "3"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "inside the object" in result.output


@pytest.mark.parametrize(
    "args,match",
    [
        (["saliency", "--out", "x.jpg"], ".png"),
        (["saliency", "--out", "no/such/folder/x.png"], "does not exist"),
        (["pretrain", "--out", "ck.bin"], ".pt"),
        (["pretrain", "--out", "no/such/folder/ck.pt"], "does not exist"),
    ],
)
def test_commands_bad_input_exit_2(args, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert match in result.output and "Traceback" not in result.output


def test_pretrain_command_missing_device(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "_cuda_available", lambda: False)
    result = CliRunner().invoke(
        main, ["pretrain", "--out", str(tmp_path / "c.pt"), "--device", "cuda", "--quiet"]
    )
    assert result.exit_code == 2
    assert "CUDA is not available" in result.output
    assert not (tmp_path / "c.pt").exists()


def test_pretrain_command_writes_checkpoint_and_reports_accuracy(tmp_path):
    out = tmp_path / "ck.pt"
    args = ["pretrain", "--out", str(out), "--epochs", "1", "--per-class", "4", "--threads", "1"]
    result = CliRunner().invoke(main, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "source-task accuracy" in result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["epochs"] == 1 and meta["n_per_class"] == 4
    assert set(torch.load(out, weights_only=True)) == set(
        transfer.load_pretrained(out).state_dict()
    )
