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
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from grader.sandbox.harness import (
    BadReturn,
    Getter,
    as_array,
    describe_error,
    harness,
    text_array,
)

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
    """The frozen-base network of the fine-tuning exercise: ``features`` then ``fc``.

    ``features`` is flatten, Linear, BatchNorm1d, ReLU, Linear, ReLU; ``(N, C, H, W)`` with
    ``C*H*W = in_features`` -> logits ``(N, num_classes)``. The BatchNorm is there on
    purpose: a fine-tuning loop that calls ``model.train()`` without putting the frozen base's
    BatchNorm back in eval mode changes its running statistics, which the grader checks.
    """
    import torch
    from torch import nn

    class FeatureNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Flatten(),
                nn.Linear(in_features, hidden),
                nn.BatchNorm1d(hidden),
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
    during training. Outputs: ``saliency`` (the map), ``mode_kept`` (1 when every module's mode
    is as it was) and ``grads_untouched`` (1 when no parameter gained a ``.grad``).
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
    return {
        "saliency": as_array(result, "the saliency map"),
        "mode_kept": np.asarray(int(_training_flags(model) == modes), dtype=np.int64),
        "grads_untouched": np.asarray(int(_grads_untouched(model)), dtype=np.int64),
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

#: Longest list of state-dict entries (as JSON text) a block reports back.
STATE_TEXT_BYTES = 16000
#: The value outputs of a block: the output and the input gradient, in eval and train mode.
BLOCK_VALUES = ("out_eval", "dx_eval", "out_train", "dx_train")


Signature = Sequence[tuple[str, tuple[int, ...]]]


class StateMatch(NamedTuple):
    """How the reference's state-dict entries map onto a module's (:func:`match_state`).

    Attributes:
        by: ``"name"`` (every name and shape agrees), ``"order"`` (other names, but the same
            shapes in the same order: matched by position) or ``"partial"`` (matched by name,
            then by the last two parts of the name, e.g. ``norm1.weight`` or ``0.weight``).
        pairs: reference name -> module name, for every reference entry that found a home.
    """

    by: str
    pairs: dict[str, str]

    def missing(self, reference: Signature) -> list[str]:
        """Reference entries that found no entry of the module."""
        return [name for name, _ in reference if name not in self.pairs]

    def extra(self, module: Signature) -> list[str]:
        """The module's entries that received nothing (their parameters are set to zero)."""
        used = set(self.pairs.values())
        return [name for name, _ in module if name not in used]


def match_state(reference: Signature, module: Signature) -> StateMatch:
    """Match the reference's ``[(name, shape), ...]`` to a module's, both in registration order.

    Names first (torchvision's names, as the stubs ask); when every shape agrees in order but
    names differ, by position; otherwise exact names, then the same last two name parts and
    shape, in order (so a ``ModuleList`` called ``layers`` or a shortcut called ``shortcut``
    still receives its weights). A pure function of the two lists: the child uses it to load,
    the parent to explain.
    """
    ref = [(str(n), tuple(s)) for n, s in reference]
    mod = [(str(n), tuple(s)) for n, s in module]
    if dict(ref) == dict(mod) and len(ref) == len(mod):
        return StateMatch("name", {n: n for n, _ in ref})
    if len(ref) == len(mod) and all(a[1] == b[1] for a, b in zip(ref, mod, strict=True)):
        return StateMatch("order", {a[0]: b[0] for a, b in zip(ref, mod, strict=True)})
    shapes = dict(mod)
    pairs = {n: n for n, shape in ref if shapes.get(n) == shape}
    used = set(pairs.values())

    def tail(name: str) -> str:
        return ".".join(name.split(".")[-2:])

    for name, shape in ref:
        if name in pairs:
            continue
        for other, other_shape in mod:
            if other not in used and other_shape == shape and tail(other) == tail(name):
                pairs[name] = other
                used.add(other)
                break
    return StateMatch("partial", pairs)


def pack_state(items: Sequence[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """A state dict's ``[(name, array), ...]`` as four plain arrays (few arrays to carry):
    ``names`` and ``dtypes`` (strings), ``shapes`` (``(k, 1 + max ndim)`` ints: ndim, then the
    dimensions, padded with 0) and ``values`` (every entry flattened, as float64; integer
    entries such as ``num_batches_tracked`` are small and exact in float64)."""
    arrays = [np.asarray(v) for _, v in items]
    width = 1 + max((a.ndim for a in arrays), default=0)
    shapes = np.zeros((len(arrays), width), dtype=np.int64)
    for i, a in enumerate(arrays):
        shapes[i, 0] = a.ndim
        shapes[i, 1 : 1 + a.ndim] = a.shape
    values = [a.astype(np.float64).ravel() for a in arrays]
    return {
        "names": np.array([str(k) for k, _ in items], dtype=str),
        "dtypes": np.array([a.dtype.str for a in arrays], dtype=str),
        "shapes": shapes,
        "values": np.concatenate(values) if values else np.zeros(0),
    }


def unpack_state(packed: Mapping[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """The ``[(name, array), ...]`` that :func:`pack_state` packed, in order."""
    out, start = [], 0
    values = np.asarray(packed["values"], dtype=np.float64)
    for name, dtype, row in zip(
        np.asarray(packed["names"]).tolist(),
        np.asarray(packed["dtypes"]).tolist(),
        np.asarray(packed["shapes"]).tolist(),
        strict=True,
    ):
        shape = tuple(int(n) for n in row[1 : 1 + int(row[0])])
        size = int(np.prod(shape, dtype=np.int64))
        out.append((str(name), values[start : start + size].reshape(shape).astype(dtype)))
        start += size
    return out


def state_signature(module) -> list[tuple[str, tuple[int, ...]]]:
    """``[(name, shape), ...]`` of ``module.state_dict()``, in registration order."""
    return [(k, tuple(int(n) for n in v.shape)) for k, v in module.state_dict().items()]


def load_reference_state(module, state: Mapping[str, np.ndarray]) -> StateMatch:
    """Copy the reference's state-dict entries into ``module`` (see :func:`match_state`).

    Args:
        module: the student's (or a known mistake's) block.
        state: the reference block's state dict packed by :func:`pack_state`, in its
            registration order (torchvision's names: ``conv1.weight``, ``bn1.running_mean``,
            ``downsample.0.weight``).

    Returns:
        The :class:`StateMatch` used. Every parameter of ``module`` that received nothing is
        set to zero (buffers keep their initial values), so the outputs are the same on every
        run of the same code.
    """
    import torch

    target = module.state_dict()
    arrays = dict(unpack_state(state))
    found = match_state([(k, v.shape) for k, v in arrays.items()], state_signature(module))
    with torch.no_grad():
        if found.by == "partial":
            for p in module.parameters():
                p.zero_()
        for ref_name, name in found.pairs.items():
            target[name].copy_(torch.from_numpy(arrays[ref_name].copy()))
    return found


def upstream_gradient(shape: Sequence[int], seed: int) -> np.ndarray:
    """The upstream gradient for an output of ``shape``: standard normal, float32, drawn from
    ``seed`` and the shape (so the parent and the child draw the same one)."""
    dims = [int(n) for n in shape]
    rng = np.random.default_rng([int(seed), len(dims), *dims])
    return rng.standard_normal(dims).astype(np.float32)


def block_values(module, x: np.ndarray, *, seed: int) -> dict[str, np.ndarray]:
    """Run ``module`` on ``x`` in eval mode, then in train mode; outputs and input gradients.

    In each mode: ``out = module(x)`` and ``dx = d(sum(out * g))/dx`` with ``g`` from
    :func:`upstream_gradient`. The input is a non-leaf copy, so a block that modifies its
    input in place still runs. Eval mode uses the BatchNorm running statistics of the
    reference; train mode the batch's own statistics.

    Raises:
        BadReturn: the forward pass returned something other than a tensor.
        Exception: whatever the forward pass raised.
    """
    import torch

    values: dict[str, np.ndarray] = {}
    for mode in ("eval", "train"):
        module.train(mode == "train")
        leaf = torch.from_numpy(np.array(x, dtype=np.float32)).requires_grad_(True)
        with torch.enable_grad():
            out = module(leaf.clone())
            if not isinstance(out, torch.Tensor):
                raise BadReturn(f"the forward pass must return a tensor, got {type(out).__name__}")
            if out.requires_grad:
                g = torch.from_numpy(upstream_gradient(out.shape, seed)).to(out.dtype)
                (dx,) = torch.autograd.grad(out, leaf, grad_outputs=g, allow_unused=True)
            else:
                dx = None
        values[f"out_{mode}"] = out.detach().cpu().numpy().copy()
        values[f"dx_{mode}"] = (
            np.zeros(leaf.shape, dtype=np.float32) if dx is None else dx.detach().numpy().copy()
        )
    return {name: values[name] for name in BLOCK_VALUES}


def block_outputs(module, case: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Everything the ``block`` harness reports for a built ``module`` on ``case``.

    Outputs: ``num_params``; ``state_names`` (the module's state-dict entries and shapes as
    JSON text, see :func:`grader.sandbox.harness.text_array`); ``forward_error`` (the text of
    the exception the forward pass raised, ``"RuntimeError: ..."``, empty when it ran) and
    ``forward_error_at`` (where in the student's code); and, when the forward pass ran, the
    :data:`BLOCK_VALUES` after loading the reference's weights (:func:`load_reference_state`).
    """
    outputs: dict[str, np.ndarray] = {
        "num_params": np.asarray(sum(int(p.numel()) for p in module.parameters()), np.int64),
        "state_names": text_array(json.dumps(state_signature(module)), STATE_TEXT_BYTES),
    }
    load_reference_state(module, case["state"])
    try:
        outputs.update(block_values(module, case["x"], seed=int(case["grad_seed"])))
    except (NotImplementedError, MemoryError, BadReturn):
        raise
    except Exception as exc:  # the student's forward pass raised: report it as data
        what, at = describe_error(exc)
        outputs["forward_error"] = text_array(what)
        outputs["forward_error_at"] = text_array(at)
        return outputs
    outputs["forward_error"] = text_array("")
    return outputs


@harness("block")
def block(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Build ``function(**case["args"])``, load the reference's weights into it by name, and
    run it in eval and train mode on ``case["x"]`` (see :func:`block_outputs`).

    A forward pass that raises does not stop the case: its error comes back as text, so the
    parent can show it and still recognise a known mistake by the parameter count.
    """
    import torch

    built = get(function)(**dict(case["args"]))
    if not isinstance(built, torch.nn.Module):
        raise BadReturn(f"{function}(...) must give an nn.Module, got {type(built).__name__}")
    return block_outputs(built, case)


# ----------------------------------------------------------------------------- fine-tuning


def _accepts(function: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


class StaleGradientProbe:
    """Counts backward passes that add to a gradient left over from before the last update.

    For each trainable parameter ``p`` a hook sees every new gradient *before* it is added to
    ``p.grad``. If ``p.grad`` then still holds a non-zero gradient and ``p`` has been updated
    in place since that gradient started (its version counter moved), the old gradient is
    about to be added to the new one: the loop forgot ``optimizer.zero_grad()``. Gradient
    accumulation on purpose (several backward passes, then one step, then zeroing) is not
    counted, because ``p`` does not change between those backward passes.
    """

    def __init__(self, parameters) -> None:
        self.backward_passes = 0
        self.stale = 0
        self._clean_version: dict[int, int] = {}
        self._handles = [p.register_hook(self._hook_for(p)) for p in parameters if p.requires_grad]

    def _hook_for(self, p):
        def hook(grad):
            key = id(p)
            self.backward_passes += 1
            old = p.grad
            if old is None or not bool(old.detach().ne(0).any()):
                self._clean_version[key] = p._version
            elif p._version != self._clean_version.get(key, p._version):
                self.stale += 1
            return grad

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@harness("fine_tune")
def fine_tune(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Train a new head on a frozen base with the student's ``fit``; what the parent checks.

    The harness builds :func:`feature_net` with the "pretrained" weights of the case (its
    BatchNorm has real running statistics), freezes ``features``, puts a new ``fc`` for the
    target classes on it, and calls ``fit(model, images, labels, epochs=..., lr=...)`` (plus
    ``progress=False`` and ``seed`` when the signature takes them).

    Outputs: ``predictions`` (the trained model's class for each held-out image);
    ``state.<name>`` for every entry of ``model.features.state_dict()`` after training (the
    parent checks that frozen parameters and BatchNorm running statistics did not change);
    ``stale_gradient_steps`` (backward passes that added to a gradient from before the last
    update, :class:`StaleGradientProbe`). The held-out labels and the target never reach the
    child: the parent scores everything (``grader.compare.fine_tune``).
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
    probe = StaleGradientProbe(list(model.parameters()))
    try:
        fit(model, images, labels, **kwargs)
    finally:
        probe.remove()
    test_images = _as_tensor(case["test_images"])
    model.eval()
    with torch.no_grad():
        logits = model(test_images)
    if tuple(logits.shape) != (test_images.shape[0], int(case["num_classes"])):
        raise BadReturn(f"after {function} the model gives logits of shape {tuple(logits.shape)}")
    outputs = {"predictions": logits.argmax(1).numpy().astype(np.int64)}
    for name, value in state_arrays(model.features).items():
        outputs[f"state.features.{name}"] = value
    outputs["stale_gradient_steps"] = np.asarray(probe.stale, dtype=np.int64)
    return outputs


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
