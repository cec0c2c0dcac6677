"""Saliency maps (Simonyan et al., 2013): which pixels move the score of a class (torch).

"Find me the pixels responsible for class c having score S_c": differentiate the class's
**logit** (not its softmax probability, as the lecture notes) with respect to the input image,
take the absolute value, and reduce the colour channels by their maximum (the default), their
mean, or keep them all.

Besides :func:`saliency_map` this module holds the two sanity checks of the docs (how much of
the saliency falls on the object, and whether it changes when the weights are re-initialised)
and :func:`save_saliency_grid`, which draws image / saliency / overlay rows to a PNG.

Shapes: ``N`` images, ``C`` channels, ``H, W`` height and width, ``K`` classes.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "randomized_copy",
    "saliency_map",
    "saliency_mask_share",
    "save_saliency_grid",
    "spearman_per_image",
]


def saliency_map(
    model: nn.Module,
    images: torch.Tensor,
    target: int | torch.Tensor,
    *,
    reduce: str = "max",
) -> torch.Tensor:
    """The vanilla-gradient saliency map of ``target``'s logit for a batch of images.

    ``S[n] = |d logit_{target[n]}(x_n) / d x_n|``, reduced over channels. The model runs in
    evaluation mode (BatchNorm uses its running statistics, dropout is off) so that each
    image's map depends on that image alone; afterwards every submodule's ``training`` flag,
    every parameter's ``.grad`` and ``requires_grad`` are exactly as they were found (only the
    input's gradient is computed, with :func:`torch.autograd.grad`).

    Args:
        model: maps ``(N, C, H, W)`` to logits ``(N, K)``.
        images: ``(N, C, H, W)`` floating-point tensor (not modified).
        target: one class index for every image (``int``) or a LongTensor ``(N,)``, one per image.
        reduce: ``"max"`` (default) or ``"mean"`` of ``|grad|`` over channels, or ``"none"``.

    Returns:
        ``(N, H, W)`` for ``"max"``/``"mean"``, ``(N, C, H, W)`` for ``"none"``; non-negative,
        detached, on the images' device and dtype.

    Raises:
        ValueError: ``reduce`` unknown, ``images`` not 4-D floating point, ``target`` of the
            wrong shape or type, or a class index outside ``[0, K)``.
    """
    if reduce not in ("max", "mean", "none"):
        raise ValueError(f"reduce must be one of ('max', 'mean', 'none'), got {reduce!r}")
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(
            f"images must have rank 4 (N, C, H, W), got shape {tuple(images.shape)}; "
            "use images.unsqueeze(0) for a single image"
        )
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point, got {images.dtype}; use images.float()")
    n = images.shape[0]
    if isinstance(target, bool) or not isinstance(target, (int, torch.Tensor)):
        raise ValueError(f"target must be an int or a LongTensor (N,), got {type(target).__name__}")
    if isinstance(target, torch.Tensor):
        if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")
        if tuple(target.shape) != (n,):
            raise ValueError(
                f"target must have shape ({n},) (one class per image), got {tuple(target.shape)}"
            )
        target_index = target.to(device=images.device, dtype=torch.int64)
    else:
        target_index = torch.full((n,), target, dtype=torch.int64, device=images.device)

    modes = [(module, module.training) for module in model.modules()]
    x = images.detach().clone().requires_grad_(True)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(x)
            if logits.dim() != 2 or logits.shape[0] != n:
                raise ValueError(
                    f"the model must return logits (N, K) = ({n}, K), got {tuple(logits.shape)}"
                )
            num_classes = logits.shape[1]
            bad = (target_index < 0) | (target_index >= num_classes)
            if bool(bad.any()):
                first = int(torch.nonzero(bad)[0, 0])
                raise ValueError(
                    f"target class {int(target_index[first])} (image {first}) is outside "
                    f"[0, {num_classes}): the model has {num_classes} classes"
                )
            # Images are independent in eval mode, so d(sum_n logit_n)/dx_n = d logit_n/dx_n.
            selected = logits.gather(1, target_index[:, None]).sum()
            (grad,) = torch.autograd.grad(selected, x)
    finally:
        for module, was_training in modes:
            module.training = was_training
    grad = grad.abs()
    if reduce == "max":
        return grad.amax(dim=1)
    if reduce == "mean":
        return grad.mean(dim=1)
    return grad


def saliency_mask_share(saliency: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of each map's saliency mass that falls inside the object mask.

    Compare it with the mask's share of the image (``masks.float().mean((1, 2))``): a map that
    ignores the object scores about that area share; one that looks at the object, far more.

    Args:
        saliency: ``(N, H, W)`` non-negative maps.
        masks: ``(N, H, W)`` boolean object masks.

    Returns:
        ``(N,)`` float tensor in ``[0, 1]`` (0 for an all-zero map).
    """
    if saliency.shape != masks.shape or saliency.dim() != 3:
        raise ValueError(
            f"saliency and masks must both be (N, H, W), got {tuple(saliency.shape)} "
            f"and {tuple(masks.shape)}"
        )
    total = saliency.sum(dim=(1, 2))
    inside = (saliency * masks.to(saliency.dtype)).sum(dim=(1, 2))
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.zeros_like(total))


def spearman_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between two maps of each image (ties get arbitrary ranks).

    Args:
        a: ``(N, ...)`` maps.
        b: ``(N, ...)`` maps of the same shape.

    Returns:
        ``(N,)`` correlations in ``[-1, 1]``.
    """
    if a.shape != b.shape:
        raise ValueError(
            f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    ra = a.flatten(1).argsort(1).argsort(1).double()
    rb = b.flatten(1).argsort(1).argsort(1).double()
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-30)


def randomized_copy(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with every parameter re-initialised (the randomization check).

    Each submodule with ``reset_parameters`` is reset under ``torch.manual_seed(seed)`` (the
    global RNG state is restored afterwards); BatchNorm running statistics are kept, so only
    the learned weights differ. The original model is untouched.
    """
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if module.affine:
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return clone


def save_saliency_grid(
    path: str | os.PathLike[str],
    images: torch.Tensor,
    saliency: torch.Tensor,
    *,
    titles: list[str] | None = None,
    cmap: str = "hot",
    alpha: float = 0.55,
) -> Path:
    """Write a PNG with one row per image: the image, its saliency map, and the overlay.

    The file is written atomically (temporary file in the same folder, then ``os.replace``),
    so an existing picture is never left half-written.

    Args:
        path: where the PNG goes (its folder must exist).
        images: ``(N, C, H, W)`` with values in ``[0, 1]``, ``C`` 1 or 3.
        saliency: ``(N, H, W)`` maps (each normalised to its own maximum for display).
        titles: optional ``N`` row labels (e.g. ``"triangle (p=0.98)"``).
        cmap: matplotlib colour map of the saliency.
        alpha: opacity of the saliency in the overlay.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"folder {str(path.parent)!r} does not exist; create it first")
    if images.dim() != 4 or saliency.dim() != 3 or images.shape[0] != saliency.shape[0]:
        raise ValueError(
            f"images must be (N, C, H, W) and saliency (N, H, W), got {tuple(images.shape)} "
            f"and {tuple(saliency.shape)}"
        )
    n = images.shape[0]
    pictures = images.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    maps = saliency.detach().float().cpu()
    maps = (maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]).numpy()
    fig = Figure(figsize=(6, 2 * n), dpi=100)
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        picture = pictures[i] if pictures.shape[-1] == 3 else pictures[i, ..., 0]
        grey = None if pictures.shape[-1] == 3 else "gray"
        axes[i, 0].imshow(picture, cmap=grey, interpolation="nearest")
        axes[i, 1].imshow(maps[i], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        axes[i, 2].imshow(picture, cmap=grey, interpolation="nearest")
        axes[i, 2].imshow(maps[i], cmap=cmap, vmin=0, vmax=1, alpha=alpha, interpolation="nearest")
        if titles is not None:
            axes[i, 0].set_ylabel(titles[i], fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, heading in zip(axes[0], ("image", "saliency", "overlay"), strict=True):
        ax.set_title(heading, fontsize=9)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=".saliency-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
