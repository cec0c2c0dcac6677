"""Exercise 6.1: saliency maps (lecture: "Saliency Maps", Simonyan et al.).

The map is ``|d logit_target / d image|`` reduced over channels (max by default); the model
runs in eval mode and is left as it was found. The harness (``grader.sandbox.harness_torch``) builds
a small public CNN from the weights in the case and hands it to the student in training mode.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cnnref import saliency
from grader.exercises._common import case
from grader.sandbox.harness_torch import saliency_net, single_threaded, state_arrays
from grader.registry import Case, ExerciseSpec, Mistake, Outputs, register


@single_threaded
def _cases(rng: np.random.Generator) -> list[Case]:
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    specs = [
        (
            "RGB batch, one target class per image (LongTensor), reduce max",
            r(3, 4),
            3,
            8,
            8,
            "tensor",
            "max",
        ),
        (
            "batch of one, non-square 6x10 image, an int target, default reduce",
            1,
            3,
            6,
            10,
            "int",
            None,
        ),
        ("reduce='mean' over 3 channels", r(2, 3), 3, 8, 6, "tensor", "mean"),
        ("reduce='none' keeps every channel", 2, 3, 6, 6, "tensor", "none"),
        (
            "grayscale (one channel), an int target for the whole batch",
            r(2, 3),
            1,
            10,
            8,
            "int",
            "max",
        ),
    ]
    cases = []
    for label, n, c, h, w, target_kind, reduce in specs:
        num_classes = r(3, 5)
        seed = int(rng.integers(0, 2**31 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = saliency_net(c, num_classes)
            bn = model[1]
            bn.running_mean.normal_(0.0, 0.3)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.normal_(0.0, 0.2)
        if target_kind == "int":
            target: int | np.ndarray = r(0, num_classes - 1)
        else:
            target = rng.integers(0, num_classes, size=n).astype(np.int64)
        inputs = dict(
            images=rng.random((n, c, h, w)).astype(np.float32),
            target=target,
            num_classes=num_classes,
            width=6,
            weights=state_arrays(model),
            reduce=reduce,
        )
        cases.append(case(f"images {n}x{c}x{h}x{w}, {label}", **inputs))
    return cases


def _model(c: Case) -> torch.nn.Module:
    model = saliency_net(c["images"].shape[1], int(c["num_classes"]), width=int(c["width"]))
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in c["weights"].items()})
    return model.eval()


def _targets(c: Case) -> torch.Tensor:
    n = c["images"].shape[0]
    if isinstance(c["target"], int):
        return torch.full((n,), c["target"], dtype=torch.int64)
    return torch.as_tensor(c["target"], dtype=torch.int64)


@single_threaded
def _reference(c: Case) -> Outputs:
    model = _model(c)
    model.train()
    kwargs = {} if c["reduce"] is None else {"reduce": c["reduce"]}
    target = c["target"] if isinstance(c["target"], int) else _targets(c)
    result = saliency.saliency_map(model, torch.from_numpy(c["images"]), target, **kwargs)
    return {
        "saliency": result.numpy(),
        "mode_kept": np.asarray(1, dtype=np.int64),
        "grads_untouched": np.asarray(1, dtype=np.int64),
    }


@single_threaded
def _variant(
    c: Case,
    *,
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    absolute: bool = True,
    reduce: str | None = None,
    train_mode: bool = False,
) -> Outputs:
    """The saliency computed some wrong way (``score(logits, targets)`` is differentiated)."""
    model = _model(c)
    if train_mode:
        model.train()
    x = torch.from_numpy(c["images"]).clone().requires_grad_(True)
    logits = model(x)
    targets = _targets(c)
    selected = logits.gather(1, targets[:, None]).sum() if score is None else score(logits, targets)
    (grad,) = torch.autograd.grad(selected, x)
    if absolute:
        grad = grad.abs()
    how = reduce or c["reduce"] or "max"
    if how == "max":
        grad = grad.amax(dim=1)
    elif how == "mean":
        grad = grad.mean(dim=1)
    return {"saliency": grad.detach().numpy()}


def _softmax_score(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logits.softmax(1).gather(1, targets[:, None]).sum()


def _predicted_score(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    del targets
    return logits.gather(1, logits.argmax(1, keepdim=True)).sum()


register(
    ExerciseSpec(
        name="saliency_map",
        number="6.1",
        topic="saliency",
        title="Saliency map: gradient of the class logit with respect to the image",
        points=4,
        function="saliency_map",
        harness="saliency",
        make_cases=_cases,
        reference=_reference,
        reference_function=saliency.saliency_map,
        rtol=1e-4,
        atol=1e-7,
        timeout_s=20.0,
        explain="saliency_state",
        mistakes=(
            Mistake(
                "softmax_instead_of_logits",
                "softmax instead of logits: differentiate the class's logit (the model's raw "
                "output), not its softmax probability, which also depends on the other classes",
                lambda c: _variant(c, score=_softmax_score),
            ),
            Mistake(
                "signed_gradient",
                "signed instead of absolute gradient: take |gradient| before reducing over "
                "channels (a pixel that lowers the score matters as much as one that raises it)",
                lambda c: _variant(c, absolute=False),
            ),
            Mistake(
                "mean_instead_of_max",
                "mean instead of max over channels: the default reduce='max' keeps the largest "
                "|gradient| of the colour channels",
                lambda c: _variant(c, reduce="mean") if (c["reduce"] or "max") == "max" else None,
            ),
            Mistake(
                "max_instead_of_mean",
                "max instead of mean over channels: reduce='mean' averages |gradient| over the "
                "colour channels",
                lambda c: _variant(c, reduce="max") if c["reduce"] == "mean" else None,
            ),
            Mistake(
                "all_classes_summed",
                "gradient of the sum of all classes' logits: differentiate only the target "
                "class's logit (logits.gather(1, target[:, None]).sum())",
                lambda c: _variant(c, score=lambda logits, t: logits.sum()),
            ),
            Mistake(
                "predicted_class_instead_of_target",
                "gradient of the predicted class instead of the target class: use the target "
                "given for each image, not the argmax of the logits",
                lambda c: _variant(c, score=_predicted_score),
            ),
            Mistake(
                "training_mode",
                "model left in training mode: call model.eval() first (BatchNorm then uses its "
                "running statistics, so each image's map depends on that image alone), and "
                "restore the mode afterwards",
                lambda c: _variant(c, train_mode=True),
            ),
        ),
        tags=frozenset({"torch"}),
    )
)
