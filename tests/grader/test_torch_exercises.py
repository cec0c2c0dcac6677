"""The torch exercises of issue 4: saliency, transfer learning, fine-tuning, blocks.

The reference (``cnnref``'s torch modules copied as a submission) passes everything; each
known mistake, written as a student would (``tests/fixtures/submissions/torch_mistakes``),
gets its message; broken submissions fail with readable feedback. Mistake recognition runs
in-process (same harnesses, no fork server) to keep this file fast; one slow test runs the
reference through the real sandbox.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from grader import engine, registry
from grader.results import Status

CNNREF = Path(__file__).resolve().parents[2] / "cnnref"
TORCH_MISTAKES = Path(__file__).resolve().parents[1] / "fixtures" / "submissions" / "torch_mistakes"
TORCH_EXERCISES = (
    "saliency_map",
    "freeze",
    "replace_head",
    "discriminative_param_groups",
    "fit",
    "vgg_block",
    "BasicBlock",
    "DenseBlock",
)
QUICK = tuple(n for n in TORCH_EXERCISES if n != "fit")
SEED = 2026


def _reference_folder(tmp: Path) -> Path:
    """The reference as a submission: each torch topic module is its cnnref module's source."""
    folder = tmp / "reference"
    folder.mkdir()
    for module in ("saliency", "transfer", "architectures", "train"):
        shutil.copy(CNNREF / f"{module}.py", folder / f"{module}.py")
    return folder


@pytest.fixture(scope="module")
def prepared() -> dict[str, engine.PreparedExercise]:
    return {name: engine.prepare(registry.get(name), SEED) for name in QUICK}


def _grade(folder: Path, items: list[engine.PreparedExercise]):
    from grader.submission import load_submission

    return engine.grade_prepared(load_submission(folder), items, seed=SEED, in_process=True)


@pytest.mark.parametrize("name", TORCH_EXERCISES)
def test_spec_is_complete(name):
    spec = registry.get(name)
    assert spec.reference_function is not None
    assert spec.reference_function.__name__ == spec.function == name
    assert spec.reference_function.__module__.startswith("cnnref.")
    assert spec.topic in ("saliency", "transfer", "architectures")
    assert "torch" in spec.tags
    if name != "fit":
        assert len(spec.mistakes) >= 2
        assert "training" not in spec.tags
    assert len({m.name for m in spec.mistakes}) == len(spec.mistakes)


def test_numbers_follow_the_lecture_after_the_numpy_exercises():
    names = registry.names()
    positions = [names.index(n) for n in TORCH_EXERCISES]
    assert positions == sorted(positions)
    assert names.index("receptive_field") < positions[0]
    numbers = [registry.get(n).number for n in TORCH_EXERCISES]
    assert numbers == ["6.1", "7.1", "7.2", "7.3", "7.4", "8.1", "8.2", "8.3"]


def test_fine_tuning_is_tagged_training_with_a_longer_timeout():
    spec = registry.get("fit")
    assert "training" in spec.tags
    assert spec.timeout_s >= 30


@pytest.mark.parametrize("name", QUICK)
def test_same_seed_same_cases_other_seed_other_cases(name, prepared):
    def fingerprint(p):
        out = []
        for c in p.cases:
            for value in c.expected.values():
                out.append(value.tolist())
            for key in sorted(c.inputs):
                v = c.inputs[key]
                out.append(v.tolist() if isinstance(v, np.ndarray) else repr(v))
        return out

    again = engine.prepare(registry.get(name), SEED)
    assert fingerprint(again) == fingerprint(prepared[name])
    other = engine.prepare(registry.get(name), SEED + 1)
    assert fingerprint(other) != fingerprint(prepared[name])


def test_every_mistake_can_show_on_some_case(prepared):
    for name in QUICK:
        spec = registry.get(name)
        shown = {slug for c in prepared[name].cases for slug in c.mistakes}
        assert shown == {m.name for m in spec.mistakes}, name


def test_saliency_cases_cover_int_target_batch_of_one_and_every_reduce(prepared):
    cases = prepared["saliency_map"].cases
    assert {c.inputs["reduce"] for c in cases} == {None, "max", "mean", "none"}
    assert any(isinstance(c.inputs["target"], int) for c in cases)
    assert any(c.inputs["images"].shape[0] == 1 for c in cases)
    assert any(c.inputs["images"].shape[2] != c.inputs["images"].shape[3] for c in cases)
    for c in cases:
        n, ch, h, w = c.inputs["images"].shape
        shape = (n, ch, h, w) if c.inputs["reduce"] == "none" else (n, h, w)
        assert c.expected["saliency"].shape == shape
        assert (c.expected["saliency"] >= 0).all()


def test_reference_saliency_is_the_absolute_logit_gradient_in_eval_mode(prepared):
    import torch

    from grader.sandbox.harness_torch import load_weights, saliency_net

    c = prepared["saliency_map"].cases[0]
    images = torch.from_numpy(c.inputs["images"]).requires_grad_(True)
    model = saliency_net(images.shape[1], c.inputs["num_classes"], width=c.inputs["width"])
    load_weights(model, c.inputs["weights"]).eval()
    target = torch.as_tensor(c.inputs["target"])
    logits = model(images)
    (grad,) = torch.autograd.grad(logits[torch.arange(len(target)), target].sum(), images)
    np.testing.assert_allclose(c.expected["saliency"], grad.abs().amax(1).numpy(), rtol=1e-5)


def test_block_expected_counts_follow_the_docstring_formulas(prepared):
    for c in prepared["BasicBlock"].cases:
        a = c.inputs["args"]
        cin, cout, s = a["in_channels"], a["out_channels"], a["stride"]
        count = 9 * cin * cout + 9 * cout * cout + 4 * cout
        if s != 1 or cin != cout:
            count += cin * cout + 2 * cout
        assert int(c.expected["num_params"]) == count
    for c in prepared["DenseBlock"].cases:
        a = c.inputs["args"]
        channels = a["in_channels"] + a["num_layers"] * a["growth_rate"]
        assert c.expected["out_eval"].shape[1] == c.expected["out_train"].shape[1] == channels


def test_public_cases_of_every_torch_exercise_fit_their_files(tmp_path, prepared):
    from grader.problemset import public_cases

    public_cases.save_prepared(tmp_path, list(prepared.values()), seed=SEED)
    _, loaded = public_cases.load_prepared(tmp_path)  # refuses a file of too many arrays
    assert [p.name for p in loaded] == list(prepared)


def test_the_reference_passes_every_torch_exercise(tmp_path, prepared):
    result = _grade(_reference_folder(tmp_path), list(prepared.values()))
    problems = [(r.name, r.status, r.feedback) for r in result.exercises if r.status != "passed"]
    assert not problems


#: The blocks' mistakes run through the real sandbox in test_block_exercises.py.
BLOCKS = ("vgg_block", "BasicBlock", "DenseBlock")


def _mistake_fixtures(*, blocks: bool = False) -> list[tuple[str, str, Path]]:
    found = [(*p.stem.split("__"), p) for p in sorted(TORCH_MISTAKES.glob("*__*.py"))]
    return [f for f in found if blocks or f[0] not in BLOCKS]


def test_every_known_mistake_has_a_fixture():
    have = {(e, s) for e, s, _ in _mistake_fixtures(blocks=True)}
    want = {(n, m.name) for n in QUICK for m in registry.get(n).mistakes}
    assert want == have


@pytest.mark.parametrize(
    ("exercise", "slug", "snippet"), _mistake_fixtures(), ids=lambda v: getattr(v, "stem", None)
)
def test_each_mistake_gets_its_message(tmp_path, prepared, exercise, slug, snippet):
    folder = _reference_folder(tmp_path)
    module = folder / f"{registry.get(exercise).topic}.py"
    module.write_text(module.read_text() + "\n\n" + snippet.read_text())
    (result,) = _grade(folder, [prepared[exercise]]).exercises
    # ERROR: the block's forward pass raises on some case (its error is shown, with its line)
    assert result.status in (Status.FAILED, Status.ERROR), result.feedback
    assert result.mistake == slug, result.feedback
    assert prepared[exercise].mistake_messages[slug] in result.feedback
    assert result.score < result.max_score


def test_stubs_score_zero_as_not_implemented(tmp_path, prepared):
    from grader.problemset import generate

    folder = tmp_path / "stubs"
    folder.mkdir()
    for topic in ("saliency", "transfer", "architectures"):
        specs = [s for s in registry.all_specs() if s.topic == topic]
        (folder / f"{topic}.py").write_text(
            generate.render_topic(topic, specs, seed=SEED, solution=False)
        )
    result = _grade(folder, list(prepared.values()))
    for r in result.exercises:
        assert r.status == Status.NOT_IMPLEMENTED, (r.name, r.feedback)
        assert r.score == 0 and "NotImplementedError" in r.feedback


def test_broken_submissions_fail_with_readable_feedback(tmp_path, prepared):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "saliency.py").write_text(
        "import torch\n\n"
        "def saliency_map(model, images, target, *, reduce='max'):\n"
        "    return torch.zeros(images.shape[0], *images.shape[2:])\n"
    )
    (folder / "transfer.py").write_text(
        "def discriminative_param_groups(groups, base_lr, factor=3.0):\n"
        "    return [{'params': [p for g in groups for p in g.parameters()], 'lr': base_lr}]\n"
    )
    (folder / "architectures.py").write_text(
        "from torch import nn\n\n"
        "def vgg_block(in_channels, out_channels, num_convs):\n"
        "    return nn.Conv2d(out_channels, out_channels, 3)\n"
    )
    items = [prepared[n] for n in ("saliency_map", "discriminative_param_groups", "vgg_block")]
    saliency, groups, vgg = _grade(folder, items).exercises
    assert saliency.status == Status.FAILED and saliency.mistake is None
    assert "saliency[" in saliency.feedback and "expected" in saliency.feedback
    assert groups.status == Status.ERROR
    assert "mixes the parameters of groups" in groups.feedback
    # the forward pass raises (the conv expects out_channels inputs): the real error is shown,
    # with its place, not a shape of -1
    assert vgg.status == Status.ERROR, vgg.feedback
    assert "the forward pass raised RuntimeError" in vgg.feedback
    assert "channels" in vgg.feedback and "-1" not in vgg.feedback


def _fine_tune_folder(tmp: Path, body: str) -> Path:
    folder = tmp / "fit"
    folder.mkdir(parents=True)
    (folder / "transfer.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "def fit(model, images, labels, *, epochs, lr=1e-3):\n" + body
    )
    return folder


@pytest.mark.slow
def test_fine_tuning_passes_a_plain_loop_and_fails_no_training(tmp_path):
    item = engine.prepare(registry.get("fit"), SEED)
    loop = (
        "    params = [p for p in model.parameters() if p.requires_grad]\n"
        "    opt = torch.optim.SGD(params, lr=lr * 5, momentum=0.9)\n"
        "    for _ in range(epochs):\n"
        "        model.train()\n"
        "        model.features.eval()  # the frozen base keeps its BatchNorm statistics\n"
        "        for i in range(0, len(labels), 16):\n"
        "            loss = nn.functional.cross_entropy(model(images[i:i+16]), labels[i:i+16])\n"
        "            opt.zero_grad()\n"
        "            loss.backward()\n"
        "            opt.step()\n"
        "    model.eval()\n"
    )
    (good,) = _grade(_fine_tune_folder(tmp_path / "a", loop), [item]).exercises
    assert good.status == Status.PASSED, good.feedback
    (bad,) = _grade(_fine_tune_folder(tmp_path / "b", "    return None\n"), [item]).exercises
    assert bad.status == Status.FAILED
    assert "held-out accuracy" in bad.feedback and "below the target 85%" in bad.feedback


def test_fine_tuning_keeps_held_out_labels_in_the_parent():
    """The child gets no labels or target to read or overwrite: only predictions come back,
    and the parent scores them against the hidden labels."""
    item = engine.prepare(registry.get("fit"), SEED)
    for case in item.cases:
        assert "test_labels" not in case.inputs and "target_accuracy" not in case.inputs
        assert case.hidden["test_labels"].shape == (case.inputs["test_images"].shape[0],)
    case = item.cases[0]
    labels = case.hidden["test_labels"]
    # what a good loop's harness sends back: the base as it was, no stale gradients
    base = {f"state.{k}": v for k, v in case.inputs["weights"].items() if k.startswith("features.")}
    clean = {**base, "stale_gradient_steps": np.asarray(0)}
    perfect, problem = engine._postprocess(item, case, {**clean, "predictions": labels.copy()})
    assert problem is None
    assert float(perfect["accuracy_shortfall"]) == 0.0
    wrong = (labels + 1) % int(case.inputs["num_classes"])
    scored, problem = engine._postprocess(item, case, {**clean, "predictions": wrong})
    assert float(scored["accuracy_shortfall"]) == pytest.approx(0.85)
    assert "held-out accuracy 0.0% is below the target 85%" in problem
    # a float "accuracy" or a fake shortfall from the child is not accepted as predictions
    _, problem = engine._postprocess(item, case, {"accuracy_shortfall": np.asarray(0.0)})
    assert "not integer class indices" in problem
    _, problem = engine._postprocess(item, case, {"predictions": labels[:3]})
    assert "shape" in problem


def test_fine_tuning_checks_the_frozen_base_and_stale_gradients_from_returned_data():
    """The parent decides, from the state the child returns, that frozen parameters and the
    BatchNorm running statistics are unchanged and that no gradient was carried over."""
    item = engine.prepare(registry.get("fit"), SEED)
    case = item.cases[0]
    labels = case.hidden["test_labels"]
    base = {f"state.{k}": v for k, v in case.inputs["weights"].items() if k.startswith("features.")}
    good = {**base, "stale_gradient_steps": np.asarray(0), "predictions": labels.copy()}
    stats = dict(good)
    stats["state.features.2.running_mean"] = base["state.features.2.running_mean"] + 0.01
    outputs, problem = engine._postprocess(item, case, stats)
    assert int(outputs["running_statistics_kept"]) == 0
    assert "the frozen base's BatchNorm1d at features.2 ran in training mode" in problem
    trained = dict(good)
    trained["state.features.1.weight"] = base["state.features.1.weight"] * 1.01
    outputs, problem = engine._postprocess(item, case, trained)
    assert int(outputs["frozen_parameters_kept"]) == 0
    assert "the frozen base was trained: features.1.weight changed" in problem
    outputs, problem = engine._postprocess(
        item, case, {**good, "stale_gradient_steps": np.asarray(9)}
    )
    assert int(outputs["stale_gradient_steps"]) == 9 and "gradients piled up" in problem
    # a child that does not send the base back cannot pass
    _, problem = engine._postprocess(item, case, {"predictions": labels.copy()})
    assert problem is not None and "did not come back" in problem


def test_saved_public_cases_keep_hidden_data_out_of_the_inputs(tmp_path):
    from grader.problemset import public_cases

    item = engine.prepare(registry.get("fit"), SEED)
    public_cases.save_prepared(tmp_path, [item], seed=SEED)
    _, (loaded,) = public_cases.load_prepared(tmp_path)
    assert loaded.postprocess == "fine_tune"
    for a, b in zip(item.cases, loaded.cases, strict=True):
        assert "test_labels" not in b.inputs
        np.testing.assert_array_equal(a.hidden["test_labels"], b.hidden["test_labels"])


@pytest.mark.slow
def test_the_reference_passes_in_the_sandbox(tmp_path):
    from grader.sandbox.runner import Sandbox

    with Sandbox() as box:
        result = engine.grade(
            _reference_folder(tmp_path), seed=SEED, exercises=list(TORCH_EXERCISES), sandbox=box
        )
    assert [r.status for r in result.exercises] == [Status.PASSED] * len(TORCH_EXERCISES), [
        r.feedback for r in result.exercises
    ]
