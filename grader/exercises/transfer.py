"""Exercises 7.x: transfer learning (lecture: "Transfer Learning" and fine-tuning).

7.1 ``freeze``, 7.2 ``replace_head``, 7.3 ``discriminative_param_groups`` (the last group gets
``base_lr``, each earlier one ``factor`` times less) and 7.4 ``fit``: train a new head on a
frozen base to a target accuracy on held-out data (a training exercise, tag ``"training"``).
The harnesses (``grader.sandbox.harness_torch``) build small public networks from the
case's weights.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnref import train, transfer
from grader.exercises._common import case
from grader.sandbox.harness_torch import (
    feature_net,
    load_weights,
    param_group_modules,
    single_threaded,
    state_arrays,
    transfer_net,
)
from grader.registry import Case, ExerciseSpec, Mistake, Outputs, register

TORCH = frozenset({"torch"})


@single_threaded
def _transfer_case(rng: np.random.Generator, head: str, **extra) -> dict:
    """Weights of a :func:`transfer_net` drawn from ``rng`` (through a torch seed)."""
    in_channels, source_classes, width = int(rng.integers(1, 4)), int(rng.integers(5, 9)), 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
        model = transfer_net(in_channels, source_classes, width=width, head=head)
    return dict(
        in_channels=in_channels,
        source_classes=source_classes,
        width=width,
        head=head,
        weights=state_arrays(model),
        **extra,
    )


def _build(c: Case) -> torch.nn.Module:
    model = transfer_net(c["in_channels"], c["source_classes"], width=c["width"], head=c["head"])
    return load_weights(model, c["weights"])


def _flags(model: torch.nn.Module) -> np.ndarray:
    return np.asarray([int(p.requires_grad) for p in model.parameters()], dtype=np.int64)


def _modes(model: torch.nn.Module) -> np.ndarray:
    return np.asarray([int(m.training) for m in model.modules()], dtype=np.int64)


# ----------------------------------------------------------------------------- 7.1 freeze


def _freeze_cases(rng: np.random.Generator) -> list[Case]:
    return [
        case(
            "freeze(model.features): the base of a CNN with an fc head",
            **_transfer_case(rng, "fc", part="features"),
        ),
        case(
            "freeze(model.features) of a model whose head is model.classifier[-1]",
            **_transfer_case(rng, "classifier", part="features"),
        ),
        case("freeze(model): the whole model", **_transfer_case(rng, "fc", part="")),
        case(
            "freeze(model.features[4]): one convolution of the base",
            **_transfer_case(rng, "fc_nobias", part="features.4"),
        ),
    ]


def _freeze_outputs(c: Case, how: str) -> Outputs:
    model = _build(c)
    model.train()
    part = model if c["part"] == "" else model.get_submodule(c["part"])
    if how == "reference":
        transfer.freeze(part)
    elif how == "eval":
        part.eval()
    elif how == "attribute":
        part.requires_grad = False  # a plain attribute: freezes nothing
    elif how == "eval_and_freeze":
        transfer.freeze(part)
        part.eval()
    outputs = {"requires_grad": _flags(model), "training": _modes(model)}
    if how == "reference":
        outputs["values_kept"] = np.asarray(1, dtype=np.int64)
    return outputs


def _freeze_context(c: Case) -> dict:
    """Names and classes of the model's modules and parameters, in the harness's order, so
    that feedback can say which module or parameter a wrong flag belongs to."""
    model = _build(c)
    modules = list(model.named_modules())
    return {
        "module_names": np.array([name for name, _ in modules], dtype=str),
        "module_classes": np.array([type(m).__name__ for _, m in modules], dtype=str),
        "parameter_names": np.array([name for name, _ in model.named_parameters()], dtype=str),
    }


register(
    ExerciseSpec(
        name="freeze",
        number="7.1",
        topic="transfer",
        title="Freeze a module: none of its parameters learns (requires_grad = False)",
        points=1,
        function="freeze",
        harness="freeze",
        make_cases=_freeze_cases,
        reference=lambda c: _freeze_outputs(c, "reference"),
        reference_function=transfer.freeze,
        timeout_s=15.0,
        context=_freeze_context,
        explain="module_flags",
        mistakes=(
            Mistake(
                "eval_instead_of_freeze",
                "eval() instead of freezing: eval() only changes how BatchNorm and dropout "
                "behave; set requires_grad = False on every parameter of the module",
                lambda c: _freeze_outputs(c, "eval"),
            ),
            Mistake(
                "module_attribute_set",
                "module.requires_grad = False sets a plain attribute and freezes nothing: "
                "loop over module.parameters() (or call module.requires_grad_(False))",
                lambda c: _freeze_outputs(c, "attribute"),
            ),
            Mistake(
                "mode_changed",
                "freeze also switched the module to eval mode: freezing changes requires_grad "
                "only and leaves the modes as they were",
                lambda c: _freeze_outputs(c, "eval_and_freeze"),
            ),
        ),
        tags=TORCH,
    )
)

# ----------------------------------------------------------------------------- 7.2 replace_head


def _head_cases(rng: np.random.Generator) -> list[Case]:
    def x_for(extra: dict) -> np.ndarray:
        return rng.random((2, extra["in_channels"], 6, 6)).astype(np.float32)

    specs = [
        ("frozen base, head model.fc", "fc", "features", 2),
        (
            "frozen base, head model.classifier[-1] after a Dropout",
            "classifier",
            "features",
            int(rng.integers(3, 6)),
        ),
        (
            "the whole model frozen first: the new head must still learn",
            "fc",
            "all",
            int(rng.integers(3, 6)),
        ),
        (
            "a head without bias: the new one keeps the old one's bias setting",
            "fc_nobias",
            "features",
            int(rng.integers(2, 5)),
        ),
        ("nothing frozen, as many classes as before", "fc", "", None),
    ]
    cases = []
    for label, head, frozen, classes in specs:
        extra = _transfer_case(rng, head, frozen=frozen)
        extra["num_classes"] = extra["source_classes"] if classes is None else classes
        extra["x"] = x_for(extra)
        cases.append(
            case(f"{label} ({extra['source_classes']} -> {extra['num_classes']} classes)", **extra)
        )
    return cases


def _head_outputs(c: Case, how: str) -> Outputs:
    model = _build(c)
    if c["frozen"]:
        transfer.freeze(model if c["frozen"] == "all" else model.features)
    head_in = 2 * c["width"]
    bias = c["head"] != "fc_nobias"
    k = c["num_classes"]
    if how == "not_replaced":
        head_shape, has_bias, trainable = (
            (c["source_classes"], head_in),
            bias,
            c["frozen"] != "all",
        )
        k = c["source_classes"]
    else:
        head_shape, has_bias, trainable = (k, head_in), bias, True
        if how == "head_frozen":
            trainable = False
        elif how == "bias_missing":
            has_bias = False
    base = [int(c["frozen"] == "" or how == "base_unfrozen")] * len(
        list(model.features.parameters())
    )
    outputs = {
        "head_shape": np.asarray(head_shape, dtype=np.int64),
        "head_bias": np.asarray(int(has_bias), dtype=np.int64),
        "head_trainable": np.asarray(int(trainable), dtype=np.int64),
        "base_requires_grad": np.asarray(base, dtype=np.int64),
        "logits_shape": np.asarray((c["x"].shape[0], k), dtype=np.int64),
    }
    if how == "reference":
        outputs["base_kept"] = np.asarray(1, dtype=np.int64)
        outputs["returned_model"] = np.asarray(1, dtype=np.int64)
        ordered = (
            "head_shape",
            "head_bias",
            "head_trainable",
            "base_requires_grad",
            "base_kept",
            "returned_model",
            "logits_shape",
        )
        return {name: outputs[name] for name in ordered}
    return outputs


@single_threaded
def _head_reference(c: Case) -> Outputs:
    # Run the reference for real and check it agrees with the description of its outputs.
    model = _build(c)
    if c["frozen"]:
        transfer.freeze(model if c["frozen"] == "all" else model.features)
    returned = transfer.replace_head(model, c["num_classes"])
    head = model.classifier[-1] if c["head"] == "classifier" else model.fc
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(c["x"]))
    expected = _head_outputs(c, "reference")
    assert returned is model and tuple(head.weight.shape) == tuple(expected["head_shape"])
    assert tuple(logits.shape) == tuple(expected["logits_shape"])
    assert int(head.bias is not None) == int(expected["head_bias"])
    assert np.array_equal(
        expected["base_requires_grad"],
        [int(p.requires_grad) for p in model.features.parameters()],
    )
    return expected


def _head_context(c: Case) -> dict:
    """The base's parameter names, in the harness's order, for feedback."""
    names = [f"features.{n}" for n, _ in _build(c).features.named_parameters()]
    return {"base_parameter_names": np.array(names, dtype=str)}


register(
    ExerciseSpec(
        name="replace_head",
        number="7.2",
        topic="transfer",
        title="Replace the classifier head by a new, trainable Linear for the target classes",
        points=2,
        function="replace_head",
        harness="replace_head",
        make_cases=_head_cases,
        reference=_head_reference,
        reference_function=transfer.replace_head,
        timeout_s=15.0,
        context=_head_context,
        explain="replace_head",
        mistakes=(
            Mistake(
                "head_frozen_too",
                "the new head is frozen too: its parameters must have requires_grad=True (a "
                "fresh nn.Linear does; do not freeze the model after replacing the head)",
                lambda c: _head_outputs(c, "head_frozen"),
            ),
            Mistake(
                "head_not_replaced",
                "head not replaced: the model still has the source task's number of outputs; "
                "put a new nn.Linear(in_features, num_classes) where the old head was",
                lambda c: _head_outputs(c, "not_replaced"),
            ),
            Mistake(
                "bias_missing",
                "the new head has no bias: keep the old head's bias setting "
                "(bias=old.bias is not None)",
                lambda c: _head_outputs(c, "bias_missing"),
            ),
            Mistake(
                "base_unfrozen",
                "the base was left trainable (unfrozen): replace_head changes only the head; "
                "leave requires_grad of the other parameters as it was",
                lambda c: _head_outputs(c, "base_unfrozen"),
            ),
        ),
        tags=TORCH,
    )
)

# ----------------------------------------------------------------------------- 7.3 param groups


def _groups_cases(rng: np.random.Generator) -> list[Case]:
    def sizes(g: int) -> np.ndarray:
        return rng.integers(1, 6, size=(g, 2)).astype(np.int64)

    def lr() -> float:
        return float(rng.choice([1e-3, 3e-3, 1e-2, 0.1]))

    g4, g3, g5 = sizes(4), sizes(3), sizes(5)
    return [
        case(
            "4 groups, factor 3", sizes=g4, frozen=np.zeros(4, np.int64), base_lr=lr(), factor=3.0
        ),
        case(
            "3 groups, the default factor (3.0)",
            sizes=g3,
            frozen=np.zeros(3, np.int64),
            base_lr=lr(),
            factor=None,
        ),
        case(
            "5 groups, factor 10", sizes=g5, frozen=np.zeros(5, np.int64), base_lr=lr(), factor=10.0
        ),
        case(
            "4 groups, the first frozen (left out), factor 2.6",
            sizes=sizes(4),
            frozen=np.asarray([1, 0, 0, 0], np.int64),
            base_lr=lr(),
            factor=2.6,
        ),
        case(
            "3 groups, one with a frozen bias (only its weight is included), factor 5",
            sizes=sizes(3),
            frozen=np.asarray([0, 2, 0], np.int64),
            base_lr=lr(),
            factor=5.0,
        ),
        case(
            "a single group gets base_lr",
            sizes=sizes(1),
            frozen=np.zeros(1, np.int64),
            base_lr=lr(),
            factor=4.0,
        ),
    ]


def _groups_outputs(c: Case, exponent, *, include_frozen: bool = False) -> Outputs:
    sizes, frozen = np.asarray(c["sizes"]), np.asarray(c["frozen"])
    factor = 3.0 if c["factor"] is None else c["factor"]
    last = len(sizes) - 1
    lrs = np.zeros(len(sizes))
    counts = np.zeros(len(sizes), dtype=np.int64)
    for g, ((a, b), how) in enumerate(zip(sizes.tolist(), frozen.tolist(), strict=True)):
        n = a * b + b if include_frozen or how == 0 else (a * b if how == 2 else 0)
        if n:
            lrs[g] = exponent(c["base_lr"], factor, g, last)
            counts[g] = n
    return {"lr": lrs, "num_params": counts}


def _groups_reference(c: Case) -> Outputs:
    modules = param_group_modules(c["sizes"], c["frozen"])
    kwargs = {} if c["factor"] is None else {"factor": c["factor"]}
    result = transfer.discriminative_param_groups(modules, c["base_lr"], **kwargs)
    owner = {id(p): g for g, m in enumerate(modules) for p in m.parameters()}
    lrs = np.zeros(len(modules))
    counts = np.zeros(len(modules), dtype=np.int64)
    for group in result:
        g = owner[id(group["params"][0])]
        lrs[g] = group["lr"]
        counts[g] = sum(int(p.numel()) for p in group["params"])
    return {"lr": lrs, "num_params": counts}


register(
    ExerciseSpec(
        name="discriminative_param_groups",
        number="7.3",
        topic="transfer",
        title="Discriminative learning rates: lr, lr/f, lr/f^2, ... from the output side",
        points=2,
        function="discriminative_param_groups",
        harness="param_groups",
        make_cases=_groups_cases,
        reference=_groups_reference,
        reference_function=transfer.discriminative_param_groups,
        rtol=1e-9,
        atol=1e-15,
        timeout_s=15.0,
        mistakes=(
            Mistake(
                "wrong_order",
                "learning rates in the wrong order: the LAST group (the output side) gets "
                "base_lr and each earlier group factor times less, so the first gets "
                "base_lr / factor**(len(groups) - 1)",
                lambda c: _groups_outputs(c, lambda lr, f, g, last: lr / f**g),
            ),
            Mistake(
                "factor_multiplied",
                "factor applied as a multiplication: earlier groups learn more slowly, so "
                "divide: base_lr / factor**(len(groups) - 1 - index)",
                lambda c: _groups_outputs(c, lambda lr, f, g, last: lr * f ** (last - g)),
            ),
            Mistake(
                "exponent_off_by_one",
                "exponent off by one: the last group gets base_lr itself (factor**0), the one "
                "before base_lr / factor, and so on",
                lambda c: _groups_outputs(c, lambda lr, f, g, last: lr / f ** (last - g + 1)),
            ),
            Mistake(
                "frozen_included",
                "frozen parameters included: keep only parameters with requires_grad "
                "(and leave out a group that has none)",
                lambda c: (
                    _groups_outputs(
                        c, lambda lr, f, g, last: lr / f ** (last - g), include_frozen=True
                    )
                    if np.asarray(c["frozen"]).any()
                    else None
                ),
            ),
        ),
        tags=TORCH,
    )
)

# ----------------------------------------------------------------------------- 7.4 fine-tuning

#: Held-out accuracy the new head must reach (chance is 1/num_classes).
TARGET_ACCURACY = 0.85


#: The reference must beat the target by this much on a case, or the case is drawn again.
FAIR_MARGIN = 0.05


@single_threaded
def _fine_tune_cases(rng: np.random.Generator) -> list[Case]:
    """Class clusters in a 16-d input space (shaped as 1x4x4 images); the frozen base is a
    random ReLU network with a BatchNorm whose "pretrained" statistics are close to (not
    equal to) the features' statistics, so its features keep the clusters apart. A case on
    which the reference ``fit`` does not beat the target by :data:`FAIR_MARGIN` is drawn
    again (a few random bases mix the clusters too much)."""
    cases = []
    for label, num_classes, per_class in (
        ("4 classes, 30 training images each", 4, 30),
        ("3 classes, 20 training images each (few-shot)", 3, 20),
    ):
        for _attempt in range(25):
            candidate = _draw_fine_tune_case(rng, num_classes, per_class)
            accuracy, _ = _reference_run(candidate)
            if accuracy >= TARGET_ACCURACY + FAIR_MARGIN:
                break
        else:
            raise ValueError(f"no fair fine-tuning case for {label!r} in 25 draws")
        cases.append(case(f"{label}, held-out target {TARGET_ACCURACY:.0%}", **candidate))
    return cases


def _draw_fine_tune_case(rng: np.random.Generator, num_classes: int, per_class: int) -> dict:
    hidden, in_features, source_classes = 32, 16, 6
    centres = rng.standard_normal((num_classes, in_features)) * 2.0

    def draw(n: int) -> tuple:
        labels = np.repeat(np.arange(num_classes), n)
        rng.shuffle(labels)
        x = centres[labels] + rng.standard_normal((labels.size, in_features))
        return x.reshape(-1, 1, 4, 4).astype(np.float32), labels.astype(np.int64)

    images, labels = draw(per_class)
    test_images, test_labels = draw(50)
    seed = int(rng.integers(0, 2**31 - 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = feature_net(in_features, hidden, source_classes)
        # "pretrained" BatchNorm statistics: close to the features' own statistics on this
        # data, so that a loop that lets them drift changes them visibly
        bn = base.features[2]
        with torch.no_grad():
            pre = base.features[1](torch.from_numpy(images.reshape(len(images), -1)))
            bn.running_mean.copy_(pre.mean(0) + 0.3 * torch.randn(hidden))
            bn.running_var.copy_(pre.var(0) * (0.5 + torch.rand(hidden)))
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.num_batches_tracked.fill_(1000)
    return dict(
        images=images,
        labels=labels,
        test_images=test_images,
        test_labels=test_labels,
        weights=state_arrays(base),
        hidden=hidden,
        source_classes=source_classes,
        num_classes=num_classes,
        epochs=30,
        lr=1e-2,
        seed=seed,
        target_accuracy=TARGET_ACCURACY,
    )


@single_threaded
def _reference_run(c: Case) -> tuple[float, dict[str, np.ndarray]]:
    """The reference ``fit`` on case ``c``: held-out accuracy, and the base's state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c["seed"])
        model = feature_net(16, c["hidden"], c["source_classes"])
        load_weights(model, c["weights"])
        transfer.freeze(model.features)
        model.fc = torch.nn.Linear(c["hidden"], c["num_classes"])
        train.fit(
            model,
            torch.from_numpy(c["images"]),
            torch.from_numpy(c["labels"]),
            epochs=c["epochs"],
            lr=c["lr"],
            seed=c["seed"],
            progress=False,
            device="cpu",
        )
        accuracy = train.evaluate(
            model,
            torch.from_numpy(c["test_images"]),
            torch.from_numpy(c["test_labels"]),
            device="cpu",
        )
    return accuracy, state_arrays(model.features)


def _fine_tune_reference(c: Case) -> Outputs:
    """Check that the reference ``fit`` reaches the target on this case and leaves the frozen
    base as it was (else the case is unfair and the grader fails loudly); the expected
    outputs are then a zero shortfall, an untouched base and no stale gradients."""
    accuracy, base_after = _reference_run(c)
    if accuracy < c["target_accuracy"] + FAIR_MARGIN:
        raise ValueError(
            f"the reference reaches only {accuracy:.3f} held-out accuracy on this case"
        )
    before = {
        k[len("features.") :]: v for k, v in c["weights"].items() if k.startswith("features.")
    }
    if any(not np.array_equal(before[k], base_after[k]) for k in before):
        raise ValueError("the reference changed the frozen base on this case")
    return {
        "accuracy_shortfall": np.asarray(0.0),
        "frozen_parameters_kept": np.asarray(1, dtype=np.int64),
        "running_statistics_kept": np.asarray(1, dtype=np.int64),
        "stale_gradient_steps": np.asarray(0, dtype=np.int64),
    }


def _fine_tune_context(c: Case) -> dict:
    """The classes of the base's modules (``features.2`` -> ``BatchNorm1d``), for feedback."""
    model = feature_net(16, c["hidden"], c["source_classes"])
    return {
        "base_modules": {
            f"features.{name}": type(m).__name__ for name, m in model.features.named_children()
        }
    }


register(
    ExerciseSpec(
        name="fit",
        number="7.4",
        topic="transfer",
        title=f"Fine-tune a new head on a frozen base to {TARGET_ACCURACY:.0%} held-out accuracy",
        points=3,
        function="fit",
        harness="fine_tune",
        make_cases=_fine_tune_cases,
        reference=_fine_tune_reference,
        reference_function=train.fit,
        rtol=0.0,
        atol=1e-9,
        timeout_s=60.0,
        tags=frozenset({"torch", "training"}),
        hidden=("test_labels", "target_accuracy"),
        postprocess="fine_tune",
        context=_fine_tune_context,
    )
)
