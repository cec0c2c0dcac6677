"""Transfer learning: freeze a pretrained base, put a new head on it, fine-tune by groups (torch).

The lecture's recipe: train on a big *source* task once (the pretrained model), then for a
small *target* task (1) freeze the convolutional base and train a new classifier head, and
(2) unfreeze the later groups and fine-tune them with *discriminative* learning rates: each
earlier group 3x-10x smaller than the next later one (``lr, lr/f, lr/f², ...``).

BatchNorm and freezing: ``requires_grad = False`` stops a BatchNorm's *affine* parameters
from learning, but in training mode it still updates its running mean and variance from the
target batches. :func:`freeze` does not change modes; call :func:`set_batchnorm_eval` after
every ``model.train()`` (``cnnref.train.fit`` does so for every BatchNorm whose parameters are
all frozen) to keep the source statistics.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CHECKPOINT_NAME",
    "checkpoint_path",
    "discriminative_param_groups",
    "freeze",
    "load_pretrained",
    "pretrained_info",
    "replace_head",
    "set_batchnorm_eval",
    "unfreeze",
]

CHECKPOINT_NAME = "small_cnn_source.pt"


def freeze(module: nn.Module) -> nn.Module:
    """Stop every parameter of ``module`` from learning (``requires_grad = False``).

    Modes are unchanged: BatchNorm layers in training mode still update their running
    statistics (see :func:`set_batchnorm_eval`).

    Args:
        module: a model or a part of one (e.g. ``model.stage1``).

    Returns:
        The same module, for chaining.
    """
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Let every parameter of ``module`` learn again (``requires_grad = True``); returns it."""
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    return module


def set_batchnorm_eval(module: nn.Module, *, only_frozen: bool = True) -> nn.Module:
    """Put BatchNorm layers of ``module`` in evaluation mode (use running statistics, keep them).

    Args:
        module: a model or part of one; call this after ``model.train()``.
        only_frozen: only the BatchNorm layers whose parameters are all frozen (or that have
            none); with ``False``, every BatchNorm layer.

    Returns:
        The same module.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            params = list(layer.parameters())
            if not only_frozen or not any(p.requires_grad for p in params):
                layer.eval()
    return module


def _find_head(model: nn.Module) -> str:
    """Dotted name of the classifier head: ``fc``, ``classifier`` (or its last Linear), or else
    the last ``nn.Linear`` registered in the model."""
    for attribute in ("fc", "classifier", "head"):
        candidate = getattr(model, attribute, None)
        if isinstance(candidate, nn.Linear):
            return attribute
        if isinstance(candidate, nn.Module):
            inner = [name for name, m in candidate.named_modules() if isinstance(m, nn.Linear)]
            if inner:
                return f"{attribute}.{inner[-1]}"
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name]
    if not linears:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer to replace; replace_head needs a "
            "classifier head (an attribute fc/classifier or a last nn.Linear)"
        )
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the model's classifier head by a new, trainable ``nn.Linear`` for ``num_classes``.

    The head is the model's ``fc`` or ``classifier`` (the last Linear inside it when it is a
    container), otherwise the last ``nn.Linear`` of the model. The new layer keeps the old
    one's input features, bias setting, device and dtype, and is freshly initialised (its
    parameters have ``requires_grad=True`` even when the rest of the model is frozen).

    Args:
        model: e.g. a pretrained ``SmallCNN`` or ``resnet18``; modified in place.
        num_classes: outputs of the new head, at least 1.

    Returns:
        The same model, for chaining.

    Raises:
        ValueError: ``num_classes < 1`` or the model has no Linear layer.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    name = _find_head(model)
    parent_name, _, child_name = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child_name)
    new = nn.Linear(
        old.in_features,
        num_classes,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    setattr(parent, child_name, new)
    return model


def discriminative_param_groups(
    groups: Sequence[nn.Module | Iterable[nn.Parameter]],
    base_lr: float,
    factor: float = 3.0,
) -> list[dict]:
    """Optimizer parameter groups with learning rates falling from the output side to the input.

    ``groups`` run from the input side to the output side; the last gets ``base_lr``, the one
    before ``base_lr/factor``, then ``base_lr/factor**2``, ... (the lecture suggests a factor
    between 3 and 10). Only parameters with ``requires_grad`` are included, so frozen parts can
    stay in the list; a group with no trainable parameter is left out of the result.

    Args:
        groups: modules (or iterables of parameters), input side first; not empty. A list,
            tuple or ``nn.ModuleList``; a single module is refused (wrap it in a list).
        base_lr: learning rate of the last group, > 0.
        factor: ratio between consecutive groups' learning rates, > 0; a factor below 1 (earlier
            layers learning faster) is allowed but warned about.

    Returns:
        ``[{"params": [...], "lr": lr}, ...]`` in input-to-output order, ready for
        ``torch.optim.SGD(groups, lr=base_lr)`` or any other optimizer.

    Raises:
        ValueError: empty ``groups``, ``base_lr <= 0``, ``factor <= 0`` (or not finite), a group
            with no parameters at all, or a parameter in two groups.
    """
    if isinstance(groups, nn.ModuleList):
        groups = list(groups)
    if isinstance(groups, nn.Module) or not isinstance(groups, Sequence) or len(groups) == 0:
        raise ValueError(
            "groups must be a non-empty list of modules (or parameter lists), input side first, "
            "e.g. [model.stage2, model.stage3, model.fc]"
        )
    if not (isinstance(base_lr, (int, float)) and base_lr > 0 and base_lr != float("inf")):
        raise ValueError(f"base_lr must be a positive finite number, got {base_lr!r}")
    if not (isinstance(factor, (int, float)) and 0 < factor < float("inf")):
        raise ValueError(
            f"factor must be a positive finite number (3 to 10 is usual), got {factor!r}"
        )
    if factor < 1:
        warnings.warn(
            f"factor {factor} < 1 gives earlier layers LARGER learning rates than later ones; "
            "the lecture's discriminative fine-tuning uses 3 to 10",
            UserWarning,
            stacklevel=2,
        )
    seen: dict[int, int] = {}
    result: list[dict] = []
    last = len(groups) - 1
    for index, group in enumerate(groups):
        params = list(group.parameters() if isinstance(group, nn.Module) else group)
        if not params:
            raise ValueError(f"group {index} has no parameters; pass modules that hold weights")
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise ValueError(f"group {index} holds a {type(p).__name__}, not a parameter")
            if id(p) in seen:
                raise ValueError(f"a parameter is in both group {seen[id(p)]} and group {index}")
            seen[id(p)] = index
        trainable = [p for p in params if p.requires_grad]
        if trainable:
            result.append({"params": trainable, "lr": base_lr / factor ** (last - index)})
    return result


# ----------------------------------------------------------------------------- the shipped model


def checkpoint_path() -> Path:
    """Where the shipped pretrained checkpoint lives (``cnnref/checkpoints/``)."""
    return Path(str(resources.files("cnnref") / "checkpoints" / CHECKPOINT_NAME))


def pretrained_info(path: str | Path | None = None) -> dict:
    """The JSON written beside a checkpoint: seed, epochs, source accuracy, command, ..."""
    path = Path(path) if path is not None else checkpoint_path()
    meta = path.with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(
            f"no metadata {meta} beside the checkpoint; rerun `cnnlab pretrain`"
        )
    return json.loads(meta.read_text())


def load_pretrained(path: str | Path | None = None, *, map_location: str = "cpu") -> nn.Module:
    """The pretrained ``SmallCNN`` source model in eval mode, loaded with ``weights_only=True``.

    Args:
        path: a checkpoint written by ``cnnlab pretrain``; default: the shipped one.
        map_location: device for the loaded tensors.

    Raises:
        FileNotFoundError: no checkpoint there (the message says how to make one).
    """
    from cnnref.architectures import SmallCNN

    path = Path(path) if path is not None else checkpoint_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; create one with `cnnlab pretrain --out {path}`"
        )
    state = torch.load(path, map_location=map_location, weights_only=True)
    num_classes = state["fc.weight"].shape[0]
    widths = (
        state["stage1.0.0.weight"].shape[0],
        state["stage2.0.0.weight"].shape[0],
        state["stage3.0.0.weight"].shape[0],
    )
    model = SmallCNN(num_classes, widths=widths)
    model.load_state_dict(state)
    return model.eval()
