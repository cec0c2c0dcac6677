"""Feedback that says what happened, through the real sandbox (one Sandbox for the module).

* a case that raised is shown with its exception, file and line, even after a wrong case;
* a backward that fails while the student's own forward is right says to check the cache
  (and one fed by a wrong forward says to fix the forward first);
* small maps are drawn expected next to received, the differing cells marked (the lecture's
  5x5 max-pool example: where the +1, +3, +4 went);
* saliency's side effects say which one (mode, or gradients left behind); freeze names the
  module whose mode it changed.

Fixture modules: tests/fixtures/submissions/feedback/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from grader import engine, registry
from grader.render import pictures_markdown, table_text
from grader.results import Status, SubmissionResult
from grader.submission import load_submission

FEEDBACK = Path(__file__).resolve().parents[1] / "fixtures" / "submissions" / "feedback"
CNNREF = Path(__file__).resolve().parents[2] / "cnnref"
SEED = 2026


@pytest.fixture(scope="module")
def box():
    from grader.sandbox import Sandbox

    with Sandbox() as sandbox:
        yield sandbox


def _folder(tmp: Path, **modules: str) -> Path:
    """A submission folder: ``topic=fixture file name`` (or ``topic="cnnref:<module>"``)."""
    folder = tmp / "submission"
    folder.mkdir()
    for topic, source in modules.items():
        if source.startswith("cnnref:"):
            shutil.copy(CNNREF / f"{source[len('cnnref:') :]}.py", folder / f"{topic}.py")
        else:
            shutil.copy(FEEDBACK / source, folder / f"{topic}.py")
    return folder


def _grade(box, folder: Path, *names: str, seed: int = SEED):
    prepared = [engine.prepare(registry.get(n), seed) for n in names]
    return engine.grade_prepared(load_submission(folder), prepared, seed=seed, sandbox=box)


def test_the_case_that_raised_is_shown_with_its_file_and_line(box, tmp_path):
    folder = _folder(tmp_path, layers="stride3_error_and_padding_ignored.py")
    (result,) = _grade(box, folder, "conv2d_forward").exercises
    assert result.status is Status.ERROR
    # the ValueError of the stride-3 case comes first, with where it was raised ...
    assert result.feedback.startswith(
        "ValueError in conv2d_forward (layers.py, line 8): stride 3 is not supported (case "
    ), result.feedback
    assert "stride 3" in result.feedback.split("(case ", 1)[1].split(")")[0]
    # ... and the wrong output of another case is still reported after it
    assert "Also wrong: out has shape" in result.feedback


def test_a_backward_misled_by_a_column_major_cache_is_told_to_check_the_cache(box, tmp_path):
    folder = _folder(tmp_path, pooling="maxpool_column_major_cache.py")
    forward, backward = _grade(box, folder, "maxpool2d_forward", "maxpool2d_backward").exercises
    assert forward.status is Status.PASSED, forward.feedback
    assert backward.status is Status.FAILED
    assert "Your maxpool2d_forward gives the right output on this case" in backward.feedback
    assert "runs on the cache your maxpool2d_forward made" in backward.feedback
    assert "row-major" in backward.feedback


def test_a_known_backward_mistake_is_not_sent_hunting_in_the_cache(box, tmp_path):
    """Usability F4: the backward's own known mistake (ties to every maximum) is named; the
    "check what the forward stores in its cache" hint is for outputs no mistake explains."""
    folder = _folder(tmp_path, pooling="maxpool_ties_to_every_maximum.py")
    forward, backward = _grade(box, folder, "maxpool2d_forward", "maxpool2d_backward").exercises
    assert forward.status is Status.PASSED, forward.feedback
    assert backward.mistake == "ties_to_all_maxima", backward.feedback
    assert "check what the forward stores" not in backward.feedback
    assert "Your maxpool2d_forward gives the right output on this case" in backward.feedback


@pytest.mark.parametrize(
    "change,needle",
    [
        (("db = dout_cols.sum", "db = 2 * dout_cols.sum"), "db does not depend on the cache"),
        (("return dxp, dw, db", "return dxp, -dw, db"), "dw is -1 times the expected values"),
        (("return dxp, dw, db", "return dxp, 0.5 * dw, db"), "dw is 0.5 times the expected"),
    ],
)
def test_a_gradient_the_cache_cannot_explain_is_not_blamed_on_the_cache(
    box, tmp_path, change, needle
):
    """A wrong db (a sum of dout) or a gradient off by a constant factor or sign: the feedback
    says so, not "check what the forward stores in its cache" (retest F8)."""
    solution = Path(__file__).resolve().parents[2] / "solutions" / "layers.py"
    folder = tmp_path / "submission"
    folder.mkdir()
    text = solution.read_text()
    assert change[0] in text
    (folder / "layers.py").write_text(text.replace(change[0], change[1], 1))
    (backward,) = _grade(box, folder, "conv2d_backward").exercises
    assert backward.status is Status.FAILED
    assert needle in backward.feedback, backward.feedback
    assert "check what the forward stores" not in backward.feedback


def test_a_backward_fed_by_a_wrong_forward_is_told_to_fix_the_forward(box, tmp_path):
    folder = _folder(tmp_path, pooling="maxpool_column_major_cache.py")
    module = folder / "pooling.py"
    # the forward now averages (a wrong output); the backward reads the same cache
    module.write_text(
        module.read_text().replace(
            "out[:, :, i, j] = flat.max(axis=2)", "out[:, :, i, j] = flat.mean(axis=2)"
        )
    )
    (backward,) = _grade(box, folder, "maxpool2d_backward").exercises
    assert backward.status is Status.FAILED
    assert "runs on the cache of your maxpool2d_forward, whose output is wrong" in (
        backward.feedback
    )
    assert "fix maxpool2d_forward first" in backward.feedback


def test_pictures_show_where_the_lectures_gradients_went(box, tmp_path):
    folder = _folder(tmp_path, pooling="maxpool_overlap_overwritten.py")
    (result,) = _grade(box, folder, "maxpool2d_backward").exercises
    assert result.mistake == "overlap_overwritten"
    picture = result.pictures[0]
    assert (picture.output, picture.index, picture.case) == ("dx", (0, 0), 1)
    expected = np.array(picture.expected)
    received = np.array(picture.received)
    # the lecture: 9 gets 1 + 1, the shared 8 gets 3 + 1 (its +1, +3, +4), 6 gets 4 + 2, 7 ...
    assert expected[1, 0] == 2 and expected[0, 2] == 4 and expected[2, 2] == 6
    assert received[1, 0] == 1 and received[0, 2] == 1  # overwritten: only the last window
    assert np.array_equal(np.array(picture.differs), expected != received)
    text = table_text(SubmissionResult(seed=SEED, exercises=(result,), source="x"))
    assert "dx[0, 0], case 1" in text and "[4]" in text and "[1]" in text
    markdown = "\n".join(pictures_markdown(result))
    assert "| **2** |" in markdown and "**4**" in markdown


def test_saliency_says_mode_not_restored(box, tmp_path):
    folder = _folder(tmp_path, saliency="saliency_mode_not_restored.py")
    (result,) = _grade(box, folder, "saliency_map").exercises
    assert result.status is Status.FAILED
    assert "the model's mode was not restored" in result.feedback
    assert "gradients were left behind" not in result.feedback
    assert "expected 1, got 0" not in result.feedback.split(". ")[0]


def test_saliency_says_parameter_gradients_left_behind(box, tmp_path):
    folder = _folder(tmp_path, saliency="saliency_gradients_left_behind.py")
    (result,) = _grade(box, folder, "saliency_map").exercises
    assert result.status is Status.FAILED
    assert "parameter gradients were left behind" in result.feedback
    assert "mode was not restored" not in result.feedback


def test_freeze_names_the_batchnorm_whose_mode_it_changed(box, tmp_path):
    folder = _folder(tmp_path, transfer="freeze_puts_batchnorm_in_eval.py")
    (result,) = _grade(box, folder, "freeze").exercises
    assert result.status is Status.FAILED and result.mistake == "mode_changed"
    assert result.feedback.startswith(
        "the BatchNorm2d at features.1 is in eval mode after freeze, but was in training mode"
    ), result.feedback
    assert "training[" in result.feedback  # the raw detail stays, in parentheses


# ----------------------------------------------------------------------------- fine-tuning

FIT = """
import torch
from torch import nn


def fit(model, images, labels, *, epochs, lr=1e-3):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr * 5,
                          momentum=0.9)
    for _ in range(epochs):
        model.train()
        {eval_base}
        for i in range(0, len(labels), 16):
            loss = nn.functional.cross_entropy(model(images[i:i + 16]), labels[i:i + 16])
            {zero_grad}
            loss.backward()
            opt.step()
    model.eval()
"""


def _fit_folder(tmp: Path, *, eval_base: bool, zero_grad: bool) -> Path:
    folder = tmp / f"fit_{eval_base}_{zero_grad}"
    folder.mkdir()
    (folder / "transfer.py").write_text(
        FIT.format(
            eval_base="model.features.eval()" if eval_base else "pass",
            zero_grad="opt.zero_grad()" if zero_grad else "pass",
        )
    )
    return folder


@pytest.fixture(scope="module")
def fit_item() -> engine.PreparedExercise:
    return engine.prepare(registry.get("fit"), SEED)


def _grade_fit(box, folder, item):
    (result,) = engine.grade_prepared(
        load_submission(folder), [item], seed=SEED, sandbox=box
    ).exercises
    return result


@pytest.mark.slow
def test_fit_passes_a_loop_that_keeps_the_frozen_base_as_it_was(box, tmp_path, fit_item):
    result = _grade_fit(box, _fit_folder(tmp_path, eval_base=True, zero_grad=True), fit_item)
    assert result.status is Status.PASSED, result.feedback


@pytest.mark.slow
def test_fit_names_the_frozen_batchnorm_put_back_in_training_mode(box, tmp_path, fit_item):
    result = _grade_fit(box, _fit_folder(tmp_path, eval_base=False, zero_grad=True), fit_item)
    assert result.status is Status.FAILED and result.score == 0
    assert "the frozen base's BatchNorm1d at features.2 ran in training mode" in result.feedback
    assert "running_mean" in result.feedback and "model.features.eval()" in result.feedback
    assert "piled up" not in result.feedback


@pytest.mark.slow
def test_fit_catches_a_loop_without_zero_grad(box, tmp_path, fit_item):
    result = _grade_fit(box, _fit_folder(tmp_path, eval_base=True, zero_grad=False), fit_item)
    assert result.status is Status.FAILED and result.score == 0
    assert "gradients piled up across steps" in result.feedback
    assert "optimizer.zero_grad()" in result.feedback
    assert "BatchNorm" not in result.feedback
