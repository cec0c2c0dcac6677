"""Training and fine-tuning loops, device selection and mixed precision (torch).

* :func:`select_device` — ``"auto"`` picks cuda, then mps, then cpu; an explicit device that
  is not there raises :class:`DeviceUnavailableError` with what to do instead.
* :func:`fit` — the fine-tuning loop: shuffled mini-batches from one seed, any parameter
  groups (e.g. from :func:`cnnref.transfer.discriminative_param_groups`), BatchNorm layers
  whose parameters are all frozen kept in eval mode, mixed precision (``torch.autocast`` +
  ``GradScaler``) on cuda only, a progress bar, deterministic on CPU for a given seed.
* :func:`evaluate` — accuracy on a labelled set.
* :func:`pretrain` — trains the :class:`~cnnref.architectures.SmallCNN` backbone on the
  source task of :mod:`cnnref.data` and writes the checkpoint (state_dict) atomically, with a
  JSON beside it (seed, epochs, accuracy, command).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "DeviceUnavailableError",
    "FitResult",
    "PretrainResult",
    "evaluate",
    "fit",
    "pretrain",
    "select_device",
]


class DeviceUnavailableError(RuntimeError):
    """A device was asked for by name but this machine (or this torch build) does not have it."""


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(device: str | torch.device = "auto") -> torch.device:
    """The device to train on.

    Args:
        device: ``"auto"`` (cuda if available, then mps, then cpu), or an explicit device such
            as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Returns:
        A ``torch.device``.

    Raises:
        DeviceUnavailableError: the requested device is not available here.
        ValueError: the string is not a device name.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        if _cuda_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{device!r} is not a device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from exc
    if chosen.type == "cuda":
        if not _cuda_available():
            raise DeviceUnavailableError(
                f"device {device!r} was requested but CUDA is not available (no GPU, or a CPU-only "
                "torch build); use device='cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            raise DeviceUnavailableError(
                f"device {device!r} was requested but only {count} CUDA device(s) exist "
                f"(cuda:0..cuda:{count - 1})"
            )
    elif chosen.type == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            f"device {device!r} was requested but Apple's MPS backend is not available here; "
            "use device='cpu' or 'auto'"
        )
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise DeviceUnavailableError(
            f"device type {chosen.type!r} is not supported by cnnlab; use 'cpu', 'cuda' or 'mps'"
        )
    return chosen


def _use_amp(amp: bool | str, device: torch.device) -> bool:
    if amp == "auto":
        return device.type == "cuda"
    if not isinstance(amp, bool):
        raise ValueError(f"amp must be True, False or 'auto', got {amp!r}")
    if amp and device.type != "cuda":
        raise ValueError(
            f"mixed precision is only used on cuda, not on {device.type}; pass amp='auto' or False"
        )
    return amp


@contextlib.contextmanager
def _deterministic(seed: int, threads: int | None) -> Iterator[None]:
    """Seed torch, fix the CPU thread count and ask for deterministic kernels; restore all
    three afterwards (the caller's RNG state included)."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def _progress(total: int, description: str, enabled: bool):
    """A rich progress bar on stderr (or a no-op)."""
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(stderr=True),
        transient=False,
    )


class FitResult(NamedTuple):
    """What :func:`fit` reports.

    Attributes:
        losses: mean training loss of each epoch.
        train_accuracy: accuracy on the training set at the end (eval mode).
        eval_accuracy: accuracy on ``eval_data`` at the end, or ``None``.
        seconds: wall time of the loop.
        device: where it ran.
        amp: whether mixed precision was used.
    """

    losses: list[float]
    train_accuracy: float
    eval_accuracy: float | None
    seconds: float
    device: str
    amp: bool


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device = "auto",
) -> float:
    """Top-1 accuracy of ``model`` (in eval mode; its mode is restored) on ``(images, labels)``.

    Args:
        model: maps ``(N, C, H, W)`` to logits ``(N, K)``.
        images: ``(N, C, H, W)``.
        labels: ``(N,)`` int64.
        batch_size: images per forward pass.
        device: as for :func:`select_device`.
    """
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(
            f"need as many labels as images (and at least one), got {images.shape[0]} images "
            f"and {labels.shape[0]} labels"
        )
    dev = select_device(device)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        correct = 0
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(dev)
            y = labels[start : start + batch_size].to(dev)
            correct += int((model(x).argmax(1) == y).sum())
    finally:
        for m, was_training in modes:
            m.training = was_training
    return correct / images.shape[0]


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    param_groups: Sequence[dict] | None = None,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    batch_size: int = 64,
    augment: bool = False,
    schedule: str = "constant",
    batchnorm_eval: bool = False,
    resample: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    device: str | torch.device = "auto",
    amp: bool | str = "auto",
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
    description: str = "training",
) -> FitResult:
    """Train ``model`` on ``(images, labels)`` with cross-entropy; the fine-tuning loop.

    Only parameters with ``requires_grad`` are optimised. BatchNorm layers whose parameters
    are all frozen are kept in eval mode throughout (their source statistics are kept).
    The model is moved to the chosen device and left there, in eval mode, at the end.

    Args:
        model: maps ``(N, C, H, W)`` to logits ``(N, K)``; modified in place.
        images: ``(N, C, H, W)`` float training images.
        labels: ``(N,)`` int64 class indices.
        epochs: passes over the data, at least 1.
        lr: learning rate (of every group without its own ``"lr"``).
        param_groups: optimizer parameter groups, e.g. from
            :func:`cnnref.transfer.discriminative_param_groups`; default all trainable params.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        weight_decay: L2 penalty.
        batch_size: images per step.
        augment: random horizontal/vertical flips and 90-degree rotations of each batch
            (the procedural shapes are rotation invariant).
        schedule: ``"constant"`` learning rates, or ``"onecycle"`` (warm-up then annealing to
            each group's own ``lr`` peak; :class:`torch.optim.lr_scheduler.OneCycleLR`).
        batchnorm_eval: keep *every* BatchNorm layer in eval mode (running statistics neither
            used from the batch nor updated; the affine parameters still learn if trainable) —
            the safe choice when fine-tuning on a few images in small batches.
        resample: optional ``epoch -> (images, labels)`` drawing fresh training data of the
            same size for every epoch after the first (a procedural stream never overfits);
            the final training accuracy is measured on the last epoch's data.
        eval_data: optional ``(images, labels)`` evaluated at the end (and shown per epoch).
        device: ``"auto"`` or a device name (see :func:`select_device`).
        amp: mixed precision: ``"auto"`` (on cuda only), ``True`` (cuda only) or ``False``.
        seed: seeds the initial RNG state, the shuffling and the augmentation.
        threads: CPU threads to use during the loop (``None`` keeps torch's setting); fixing
            it makes CPU runs bitwise reproducible for a seed.
        progress: show a progress bar on stderr.
        description: the progress bar's label.

    Returns:
        :class:`FitResult`.

    Raises:
        DeviceUnavailableError: the requested device is missing.
        ValueError: bad hyperparameters or mismatched data.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if images.dim() != 4 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images must be (N, C, H, W) and labels (N,), got {tuple(images.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if schedule not in ("constant", "onecycle"):
        raise ValueError(f"schedule must be 'constant' or 'onecycle', got {schedule!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    dev = select_device(device)
    use_amp = _use_amp(amp, dev)
    groups = (
        list(param_groups)
        if param_groups is not None
        else [{"params": [p for p in model.parameters() if p.requires_grad]}]
    )
    if not any(len(list(g["params"])) for g in groups):
        raise ValueError("nothing to train: every parameter is frozen (requires_grad=False)")

    start_time = time.perf_counter()
    losses: list[float] = []
    n = images.shape[0]
    with _deterministic(seed, threads):
        model.to(dev)
        if optimizer == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
        else:
            opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        generator = torch.Generator().manual_seed(seed)
        steps_per_epoch = (n + batch_size - 1) // batch_size
        scheduler = None
        if schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=[g["lr"] for g in opt.param_groups],
                total_steps=epochs * steps_per_epoch,
            )
        with _progress(epochs * steps_per_epoch, description, progress) as bar:
            task = (
                bar.add_task(description, total=epochs * steps_per_epoch, status="")
                if bar is not None
                else None
            )
            for epoch in range(epochs):
                if resample is not None and epoch > 0:
                    images, labels = resample(epoch)
                    if images.shape[0] != n or labels.shape != (n,):
                        raise ValueError(
                            f"resample({epoch}) must return {n} images and labels like the first"
                        )
                model.train()
                _keep_frozen_batchnorm_eval(model, every=batchnorm_eval)
                order = torch.randperm(n, generator=generator)
                total = 0.0
                for start in range(0, n, batch_size):
                    index = order[start : start + batch_size]
                    x = images[index]
                    if augment:
                        x = _augment(x, generator)
                    x, y = x.to(dev, non_blocking=True), labels[index].to(dev, non_blocking=True)
                    with torch.autocast(device_type=dev.type, enabled=use_amp):
                        loss = nn.functional.cross_entropy(model(x), y)
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    if scheduler is not None:
                        scheduler.step()
                    total += float(loss.detach()) * index.shape[0]
                    if bar is not None:
                        bar.advance(task)
                losses.append(total / n)
                if bar is not None:
                    bar.update(task, status=f"epoch {epoch + 1}/{epochs} loss {losses[-1]:.3f}")
        model.eval()
        train_accuracy = evaluate(model, images, labels, device=dev)
        eval_accuracy = (
            evaluate(model, eval_data[0], eval_data[1], device=dev)
            if eval_data is not None
            else None
        )
    return FitResult(
        losses, train_accuracy, eval_accuracy, time.perf_counter() - start_time, str(dev), use_amp
    )


def _keep_frozen_batchnorm_eval(model: nn.Module, *, every: bool) -> None:
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and (
            every or not any(p.requires_grad for p in layer.parameters())
        ):
            layer.eval()


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations, one draw per batch (cheap and seeded)."""
    k = int(torch.randint(0, 4, (1,), generator=generator))
    x = torch.rot90(x, k, dims=(2, 3))
    if bool(torch.randint(0, 2, (1,), generator=generator)):
        x = torch.flip(x, dims=(3,))
    return x


# ----------------------------------------------------------------------------- pretraining


class PretrainResult(NamedTuple):
    """What :func:`pretrain` reports.

    Attributes:
        model: the trained ``SmallCNN`` (eval mode, on cpu).
        source_accuracy: accuracy on a fresh source test split.
        fit: the training loop's :class:`FitResult`.
        path: the checkpoint written, or ``None``.
        metadata: what the JSON beside the checkpoint holds.
    """

    model: nn.Module
    source_accuracy: float
    fit: FitResult
    path: Path | None
    metadata: dict


def pretrain(
    *,
    seed: int = 0,
    epochs: int = 10,
    n_per_class: int = 500,
    n_test_per_class: int = 250,
    lr: float = 4e-3,
    batch_size: int = 64,
    augment: bool = False,
    threads: int | None = 2,
    out: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    command: str | None = None,
) -> PretrainResult:
    """Train the source-task backbone (:class:`~cnnref.architectures.SmallCNN`) from scratch.

    Data: every epoch draws a fresh :func:`cnnref.data.source_task` set (``n_per_class``
    images per class, data seed ``1000*seed + epoch``), so the model never sees an image
    twice; accuracy is measured on a ``"test"`` split. Adam with a one-cycle schedule. The
    model is initialised under ``torch.manual_seed(seed)``; with the same seed, thread count
    and torch version the checkpoint is reproduced bit for bit on CPU.

    Args:
        seed: seeds the data, the initialisation and the shuffling.
        epochs: epochs, each on freshly drawn source images.
        n_per_class: source training images per class and epoch.
        n_test_per_class: source test images per class for the reported accuracy.
        lr: peak Adam learning rate of the one-cycle schedule.
        batch_size: images per step.
        augment: random flips / 90-degree rotations (the shapes are already drawn at random
            angles, so this is off by default).
        threads: CPU threads during training (fixed for reproducibility).
        out: where to write the checkpoint (a ``.pt`` state_dict) and its ``.json``; ``None``
            writes nothing. Both files are written atomically.
        device: where to train; ``"cpu"`` by default for reproducibility.
        progress: show a progress bar.
        command: the command line recorded in the JSON.

    Returns:
        :class:`PretrainResult`.
    """
    from cnnref import data
    from cnnref.architectures import SmallCNN

    select_device(device)  # fail before drawing any data
    if out is not None:
        out = Path(out)
        if out.suffix != ".pt":
            raise ValueError(f"the checkpoint name must end in .pt, got {str(out)!r}")
        if not out.parent.is_dir():
            raise ValueError(f"folder {str(out.parent)!r} does not exist; create it first")

    def draw(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        fresh = data.source_task(n_per_class=n_per_class, seed=1000 * seed + epoch)
        return fresh.images, fresh.labels

    train = data.source_task(n_per_class=n_per_class, seed=1000 * seed)
    test = data.source_task(n_per_class=n_test_per_class, seed=seed, split="test")
    torch.manual_seed(seed)
    model = SmallCNN(len(train.class_names))
    result = fit(
        model,
        train.images,
        train.labels,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        augment=augment,
        schedule="onecycle",
        resample=draw,
        device=device,
        seed=seed,
        threads=threads,
        progress=progress,
        description="pretraining on the source task",
    )
    model.cpu().eval()
    accuracy = evaluate(model, test.images, test.labels, device="cpu")
    metadata = {
        "architecture": "small_cnn",
        "classes": list(train.class_names),
        "seed": seed,
        "epochs": epochs,
        "n_per_class": n_per_class,
        "lr": lr,
        "batch_size": batch_size,
        "augment": augment,
        "threads": threads,
        "source_accuracy": round(accuracy, 4),
        "source_test_images": len(test),
        "train_seconds": round(result.seconds, 1),
        "torch": torch.__version__,
        "command": command
        or f"cnnlab pretrain --seed {seed} --epochs {epochs} --out {out or 'checkpoint.pt'}",
    }
    if out is not None:
        _atomic_write(out, lambda handle: torch.save(model.state_dict(), handle))
        text = json.dumps(metadata, indent=2) + "\n"
        _atomic_write(out.with_suffix(".json"), lambda handle: handle.write(text.encode()))
    return PretrainResult(model, accuracy, result, out, metadata)


def _atomic_write(path: Path, write) -> None:
    """Write through ``write(handle)`` to a temporary file beside ``path``, then rename it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
