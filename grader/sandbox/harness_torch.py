"""Child-side harnesses of the torch exercises: saliency, transfer learning, blocks, training.

Runs inside the sandboxed child, like :mod:`grader.sandbox.harness`: numpy and torch only, never
``cnnref``. The models a harness needs are the small public networks defined here (none of
them is the answer to an exercise); their weights travel in the case as arrays (state-dict
entries) and are loaded with :func:`load_weights`. The parent imports this module too, to
build the very same networks for the reference and the known mistakes.

Every harness returns plain numpy arrays; nothing the student returns is trusted beyond that.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from grader.sandbox.harness import BadReturn, Getter, as_array, harness

# ----------------------------------------------------------------------------- public models


def saliency_net(in_channels: int, num_classes: int, *, width: int = 6):
    """The small CNN of the saliency exercise: conv-BN-ReLU-pool, conv-ReLU, pool, fc.

    ``(N, in_channels, H, W)`` -> logits ``(N, num_classes)`` for any ``H, W >= 2``. The
    BatchNorm makes a map depend on the rest of the batch when the model is left in
    training mode (which is why saliency runs the model in eval mode).
    """
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * width, num_classes),
    )


def transfer_net(in_channels: int, num_classes: int, *, width: int = 4, head: str = "fc"):
    """The small "pretrained" CNN of the transfer exercises: ``features`` then a head.

    Args:
        in_channels: input channels.
        num_classes: outputs of the (source) head.
        width: channels of the first convolution.
        head: ``"fc"`` (a Linear called ``fc``), ``"fc_nobias"`` (the same without bias) or
            ``"classifier"`` (``classifier = Sequential(Dropout, Linear)``).
    """
    import torch
    from torch import nn

    class TransferNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            if head == "classifier":
                self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * width, num_classes))
            else:
                self.fc = nn.Linear(2 * width, num_classes, bias=head != "fc_nobias")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.features(x)
            return self.classifier(z) if head == "classifier" else self.fc(z)

    return TransferNet()


def feature_net(in_features: int, hidden: int, num_classes: int):
    """The frozen-base network of the fine-tuning exercise: flatten, two ReLU layers, ``fc``.

    ``(N, C, H, W)`` with ``C*H*W = in_features`` -> logits ``(N, num_classes)``.
    """
    import torch
    from torch import nn

    class FeatureNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Flatten(),
                nn.Linear(in_features, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
            )
            self.fc = nn.Linear(hidden, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x))

    return FeatureNet()


def load_weights(model, weights: Mapping[str, np.ndarray]):
    """Load ``weights`` (state-dict entries as arrays) into ``model``; returns the model."""
    import torch

    state = {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)
    return model


def state_arrays(model) -> dict[str, np.ndarray]:
    """``model``'s state dict as plain arrays (the form weights travel in)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def _as_tensor(value: Any):
    import torch

    return torch.from_numpy(np.array(value))


def _target_argument(target: Any):
    """A case's target as the student receives it: an ``int``, or a LongTensor ``(N,)``."""
    import torch

    if isinstance(target, int):
        return target
    return torch.as_tensor(np.asarray(target), dtype=torch.int64)


def _training_flags(model) -> list[bool]:
    return [m.training for m in model.modules()]


def _grads_untouched(model) -> bool:
    return all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- saliency


@harness("saliency")
def saliency(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """``saliency_map(model, images, target, reduce=...)`` on :func:`saliency_net`.

    The model is handed over in *training* mode with no gradients, as a student would have it
    during training. Outputs: ``saliency`` (the map) and ``state_kept`` (1 when every module's
    mode is as it was and no parameter gained a ``.grad``).
    """
    import torch

    images = _as_tensor(case["images"])
    model = saliency_net(images.shape[1], int(case["num_classes"]), width=int(case["width"]))
    load_weights(model, case["weights"])
    model.train()
    modes = _training_flags(model)
    kwargs = {} if case.get("reduce") is None else {"reduce": case["reduce"]}
    with torch.enable_grad():
        result = get(function)(model, images, _target_argument(case["target"]), **kwargs)
    if result is None:
        raise BadReturn(f"{function} returned None: return the saliency tensor")
    kept = _training_flags(model) == modes and _grads_untouched(model)
    return {
        "saliency": as_array(result, "the saliency map"),
        "state_kept": np.asarray(int(kept), dtype=np.int64),
    }


# ----------------------------------------------------------------------------- transfer


def _build_transfer(case: dict[str, Any]):
    model = transfer_net(
        int(case["in_channels"]),
        int(case["source_classes"]),
        width=int(case["width"]),
        head=str(case["head"]),
    )
    return load_weights(model, case["weights"])


def _head_of(model, head: str):
    return model.classifier[-1] if head == "classifier" else model.fc


@harness("freeze")
def freeze(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """``freeze(part)`` on a part of :func:`transfer_net` named by ``case["part"]``.

    Outputs, over ``model.named_parameters()`` in order: ``requires_grad`` (0/1 each), and
    ``training`` (each module's mode afterwards, 0/1), ``values_kept`` (1 when no weight
    changed).
    """
    model = _build_transfer(case)
    model.train()
    before = state_arrays(model)
    part = model if case["part"] == "" else model.get_submodule(str(case["part"]))
    get(function)(part)
    after = state_arrays(model)
    kept = all(np.array_equal(before[k], after[k]) for k in before)
    return {
        "requires_grad": np.asarray(
            [int(p.requires_grad) for p in model.parameters()], dtype=np.int64
        ),
        "training": np.asarray([int(t) for t in _training_flags(model)], dtype=np.int64),
        "values_kept": np.asarray(int(kept), dtype=np.int64),
    }


@harness("replace_head")
def replace_head(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """``replace_head(model, num_classes)`` on :func:`transfer_net` whose ``features`` the
    harness has frozen (``case["frozen"]``: ``"features"``, ``"all"`` or ``""``).

    Outputs: ``head_shape`` (out, in features of the head afterwards), ``head_bias`` (0/1),
    ``head_trainable`` (1 when every head parameter requires grad), ``base_requires_grad``
    (0/1 per ``features`` parameter), ``base_kept`` (1 when no ``features`` weight changed),
    ``returned_model`` (1 when the model itself was returned), ``logits_shape`` (of a
    forward pass on ``case["x"]``).
    """
    import torch

    head = str(case["head"])
    model = _build_transfer(case)
    frozen = str(case["frozen"])
    if frozen:
        for p in (model if frozen == "all" else model.features).parameters():
            p.requires_grad_(False)
    base_before = state_arrays(model.features)
    returned = get(function)(model, int(case["num_classes"]))
    new_head = _head_of(model, head)
    if not isinstance(new_head, torch.nn.Linear):
        raise BadReturn(
            f"after {function} the head ({'classifier[-1]' if head == 'classifier' else 'fc'}) "
            f"is a {type(new_head).__name__}, not an nn.Linear: replace the Linear layer in place"
        )
    base_after = state_arrays(model.features)
    model.eval()
    with torch.no_grad():
        logits = model(_as_tensor(case["x"]))
    return {
        "head_shape": np.asarray(tuple(new_head.weight.shape), dtype=np.int64),
        "head_bias": np.asarray(int(new_head.bias is not None), dtype=np.int64),
        "head_trainable": np.asarray(
            int(all(p.requires_grad for p in new_head.parameters())), dtype=np.int64
        ),
        "base_requires_grad": np.asarray(
            [int(p.requires_grad) for p in model.features.parameters()], dtype=np.int64
        ),
        "base_kept": np.asarray(
            int(all(np.array_equal(base_before[k], base_after[k]) for k in base_before)),
            dtype=np.int64,
        ),
        "returned_model": np.asarray(int(returned is model), dtype=np.int64),
        "logits_shape": np.asarray(tuple(logits.shape), dtype=np.int64),
    }


def param_group_modules(sizes: np.ndarray, frozen: np.ndarray):
    """The modules of the param-groups exercise: group ``g`` is ``Linear(a_g, b_g)`` with
    ``sizes[g] = (a_g, b_g)``; ``frozen[g]`` 1 freezes it whole, 2 freezes only its bias."""
    from torch import nn

    modules = []
    for (a, b), how in zip(np.asarray(sizes).tolist(), np.asarray(frozen).tolist(), strict=True):
        layer = nn.Linear(int(a), int(b))
        if how == 1:
            layer.requires_grad_(False)
        elif how == 2:
            layer.bias.requires_grad_(False)
        modules.append(layer)
    return modules


@harness("param_groups")
def param_groups(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """``discriminative_param_groups(groups, base_lr, factor=...)`` on small Linear groups.

    Outputs, aligned with the input groups (input side first): ``lr`` (the learning rate of
    the returned dict holding that group's parameters, 0 when none does) and ``num_params``
    (how many numbers of that group the returned dicts hold).
    """
    modules = param_group_modules(case["sizes"], case["frozen"])
    owner = {id(p): g for g, m in enumerate(modules) for p in m.parameters()}
    kwargs = {} if case.get("factor") is None else {"factor": case["factor"]}
    result = get(function)(modules, case["base_lr"], **kwargs)
    if not isinstance(result, (list, tuple)):
        raise BadReturn(
            f"{function} must return a list of dicts {{'params': [...], 'lr': ...}}, "
            f"got {type(result).__name__}"
        )
    lrs = np.zeros(len(modules), dtype=np.float64)
    counts = np.zeros(len(modules), dtype=np.int64)
    seen: set[int] = set()
    for i, group in enumerate(result):
        if not isinstance(group, Mapping) or "params" not in group or "lr" not in group:
            raise BadReturn(
                f"item {i} of the returned list must be a dict with 'params' and 'lr', "
                f"got {group!r:.80}"
            )
        params = list(group["params"])
        if not params:
            raise BadReturn(f"dict {i} has no parameters: leave out a group with none")
        groups_in = {owner.get(id(p), -1) for p in params}
        if -1 in groups_in:
            raise BadReturn(f"dict {i} holds a parameter that is in none of the groups")
        if len(groups_in) != 1:
            raise BadReturn(
                f"dict {i} mixes the parameters of groups {sorted(groups_in)}: "
                "make one dict per group"
            )
        (g,) = groups_in
        if g in seen:
            raise BadReturn(f"group {g} appears in two dicts: make one dict per group")
        seen.add(g)
        lr = group["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
            raise BadReturn(f"the 'lr' of dict {i} must be a number, got {type(lr).__name__}")
        lrs[g] = float(lr)
        counts[g] = sum(int(p.numel()) for p in params)
    return {"lr": lrs, "num_params": counts}


# ----------------------------------------------------------------------------- blocks


@harness("block")
def block(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Build ``function(**case["args"])`` and run it on ``case["x"]``.

    Outputs: ``num_params`` (numbers in ``parameters()``) and ``out_shape`` (of the forward
    pass in eval mode; ``-1`` everywhere when the forward pass raised, whose error is printed).
    """
    import torch

    args = dict(case["args"])
    built = get(function)(**args)
    if not isinstance(built, torch.nn.Module):
        raise BadReturn(f"{function}(...) must give an nn.Module, got {type(built).__name__}")
    num_params = sum(int(p.numel()) for p in built.parameters())
    x = _as_tensor(case["x"])
    built.eval()
    try:
        with torch.no_grad():
            out = built(x)
        if not isinstance(out, torch.Tensor):
            raise BadReturn(f"the forward pass must return a tensor, got {type(out).__name__}")
        out_shape = np.asarray(tuple(out.shape), dtype=np.int64)
    except NotImplementedError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        print(f"the forward pass of {function}(...) on x {tuple(x.shape)} failed: {exc}")
        out_shape = np.full(x.dim(), -1, dtype=np.int64)
    return {"num_params": np.asarray(num_params, dtype=np.int64), "out_shape": out_shape}


# ----------------------------------------------------------------------------- fine-tuning


def _accepts(function: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


@harness("fine_tune")
def fine_tune(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Train a new head on a frozen base with the student's ``fit``; held-out accuracy.

    The harness builds :func:`feature_net` with the "pretrained" weights of the case, freezes
    ``features``, puts a new ``fc`` for the target classes on it, and calls
    ``fit(model, images, labels, epochs=..., lr=...)`` (plus ``progress=False`` and ``seed``
    when the signature takes them). Output: ``predictions``, the trained model's class for
    each held-out image. The held-out labels and the target never reach the child: the parent
    scores the predictions (``grader.compare.accuracy_shortfall``).
    """
    import torch

    torch.manual_seed(int(case["seed"]))
    images = _as_tensor(case["images"])
    labels = _as_tensor(case["labels"]).to(torch.int64)
    in_features = int(np.prod(images.shape[1:]))
    model = feature_net(in_features, int(case["hidden"]), int(case["source_classes"]))
    load_weights(model, case["weights"])
    for p in model.features.parameters():
        p.requires_grad_(False)
    model.fc = torch.nn.Linear(int(case["hidden"]), int(case["num_classes"]))
    fit = get(function)
    kwargs: dict[str, Any] = {"epochs": int(case["epochs"]), "lr": float(case["lr"])}
    for name, value in (("progress", False), ("seed", int(case["seed"]))):
        if _accepts(fit, name):
            kwargs[name] = value
    fit(model, images, labels, **kwargs)
    test_images = _as_tensor(case["test_images"])
    model.eval()
    with torch.no_grad():
        logits = model(test_images)
    if tuple(logits.shape) != (test_images.shape[0], int(case["num_classes"])):
        raise BadReturn(f"after {function} the model gives logits of shape {tuple(logits.shape)}")
    return {"predictions": logits.argmax(1).numpy().astype(np.int64)}


# ----------------------------------------------------------------------------- speed


def single_threaded(fn):
    """Run ``fn`` with one torch thread (restored afterwards).

    The models here are tiny: on a busy machine torch's thread pool makes them 10-20x slower
    than one thread. The parent wraps its reference and known-mistake computations with this;
    the sandboxed child already runs with one thread.
    """
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper
