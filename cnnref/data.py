"""Procedural, offline image data for the saliency and transfer-learning parts (torch).

Nothing is downloaded: every image is drawn from a seed. An image is one object — a shape
filled with a texture (solid, stripes, checks or dots, in two colours) — at a random
position, size and rotation, on a coloured background with a smooth gradient and pixel
noise. Each image comes with its ground-truth object mask, so saliency can be checked
against where the object really is.

Two tasks share the same low-level features (edges, corners, curves, textures, colours) but
not their classes, which is the lecture's transfer setting:

* the **source** task (:func:`source_task`): 8 shapes, many labelled images;
* the **target** task (:func:`target_task`): 5 *new* shapes — hollow, cut or combined forms
  of the same strokes — with only a few labelled images per class and a separate test set.

Every draw is deterministic per ``(seed, split)``; thousands of 32x32 images take well under a
second (vectorised numpy).

Shapes: ``N`` images, ``H = W = size`` pixels, 3 colour channels (RGB in ``[0, 1]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "SHAPES",
    "SOURCE_CLASSES",
    "TARGET_CLASSES",
    "TEXTURES",
    "ShapeImages",
    "TargetTask",
    "make_dataset",
    "render",
    "source_task",
    "target_task",
]

SOURCE_CLASSES = ("circle", "square", "triangle", "pentagon", "star", "plus", "ellipse", "l_shape")
TARGET_CLASSES = ("ring", "crescent", "t_shape", "frame", "semicircle")
TEXTURES = ("solid", "stripes", "checks", "dots")

_SPLITS = {"train": 0, "test": 1, "val": 2}
_TASKS = {"source": 0, "target": 1}


class ShapeImages(NamedTuple):
    """A labelled set of procedural images.

    Attributes:
        images: ``(N, 3, H, W)`` float32 RGB in ``[0, 1]``.
        labels: ``(N,)`` int64 class indices into ``class_names``.
        masks: ``(N, H, W)`` bool, True on the object.
        class_names: the names of the classes, index order.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class TargetTask(NamedTuple):
    """The few-shot target task: ``train`` has ``shots`` images per class, ``test`` many more."""

    train: ShapeImages
    test: ShapeImages


# ----------------------------------------------------------------------------- shapes
# Each shape is an implicit function of the object's own coordinates (u, v): rotated,
# centred and scaled so that the shape fits in the unit disc. rho, phi are polar coordinates.


def _polygon(sides: int, radius: float = 0.95) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        rho = np.hypot(u, v)
        sector = 2 * np.pi / sides
        phi = np.mod(np.arctan2(v, u), sector) - sector / 2
        return rho * np.cos(phi) <= radius * np.cos(np.pi / sides)

    return inside


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    rho = np.hypot(u, v)
    sector = 2 * np.pi / 5
    phi = np.abs(np.mod(np.arctan2(v, u), sector) - sector / 2) / (sector / 2)  # 0 at a tip
    return rho <= 0.42 + 0.55 * (1 - phi) ** 1.5


def _box(u: np.ndarray, v: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    # source
    "circle": lambda u, v: np.hypot(u, v) <= 0.9,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.7,
    "triangle": _polygon(3),
    "pentagon": _polygon(5, 0.92),
    "star": _star,
    "plus": lambda u, v: (
        _box(u, v, -0.28, 0.28, -0.92, 0.92) | _box(u, v, -0.92, 0.92, -0.28, 0.28)
    ),
    "ellipse": lambda u, v: (u / 0.95) ** 2 + (v / 0.45) ** 2 <= 1,
    "l_shape": lambda u, v: (
        _box(u, v, -0.75, -0.2, -0.85, 0.85) | _box(u, v, -0.75, 0.75, 0.3, 0.85)
    ),
    # target: new shapes made of the same edges, corners and curves
    "ring": lambda u, v: (np.hypot(u, v) <= 0.9) & (np.hypot(u, v) >= 0.52),
    "crescent": lambda u, v: (np.hypot(u, v) <= 0.9) & (np.hypot(u - 0.5, v) >= 0.7),
    "t_shape": lambda u, v: (
        _box(u, v, -0.9, 0.9, -0.85, -0.35) | _box(u, v, -0.27, 0.27, -0.85, 0.9)
    ),
    "frame": lambda u, v: (
        (np.maximum(np.abs(u), np.abs(v)) <= 0.75) & (np.maximum(np.abs(u), np.abs(v)) >= 0.42)
    ),
    "semicircle": lambda u, v: (np.hypot(u, v + 0.3) <= 0.95) & (v >= -0.3),
}
"""Shape name -> ``inside(u, v)`` on the object's normalised coordinates."""


# ----------------------------------------------------------------------------- rendering


def _rgb(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=(n, 3))


def render(
    shape_names: Sequence[str],
    labels: np.ndarray,
    *,
    seed: int | Sequence[int],
    size: int = 32,
    noise: tuple[float, float] = (0.02, 0.08),
) -> ShapeImages:
    """Draw one image per label: the shape ``shape_names[label]`` with random everything else.

    Random per image: centre (within the middle ~40% of the image), radius (22-36% of the
    size), rotation, texture (one of :data:`TEXTURES`, its period and angle), foreground
    colours (kept at least 0.45 away from the background colour), background colour and
    gradient, Gaussian pixel-noise level drawn from ``noise``.

    Args:
        shape_names: names from :data:`SHAPES`; ``labels`` index into it.
        labels: ``(N,)`` integer array.
        seed: an int or a sequence of ints for ``numpy.random.default_rng``.
        size: ``H = W`` in pixels (at least 16).
        noise: range of the per-image noise standard deviation.

    Returns:
        :class:`ShapeImages` with ``class_names = tuple(shape_names)``.
    """
    unknown = [name for name in shape_names if name not in SHAPES]
    if unknown:
        raise ValueError(f"unknown shape(s) {unknown}; known: {', '.join(SHAPES)}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() >= len(shape_names))):
        raise ValueError(f"labels must be a 1-D array of indices into {len(shape_names)} shapes")
    rng = np.random.default_rng(seed)
    n = labels.shape[0]
    coords = np.arange(size, dtype=np.float32) + 0.5
    ys, xs = coords[None, :, None], coords[None, None, :]

    cx = rng.uniform(0.32, 0.68, n).astype(np.float32)[:, None, None] * size
    cy = rng.uniform(0.32, 0.68, n).astype(np.float32)[:, None, None] * size
    radius = rng.uniform(0.22, 0.36, n).astype(np.float32)[:, None, None] * size
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    cos, sin = np.cos(angle), np.sin(angle)
    dx, dy = xs - cx, ys - cy
    u = (dx * cos + dy * sin) / radius
    v = (-dx * sin + dy * cos) / radius

    masks = np.zeros((n, size, size), dtype=bool)
    for index, name in enumerate(shape_names):
        chosen = labels == index
        if chosen.any():
            masks[chosen] = SHAPES[name](u[chosen], v[chosen])

    # texture pattern in [0, 1]: 0 -> colour A, 1 -> colour B
    texture = rng.integers(0, len(TEXTURES), n)
    period = rng.uniform(3.0, 6.0, n).astype(np.float32)[:, None, None]
    tex_angle = rng.uniform(0, np.pi, n).astype(np.float32)[:, None, None]
    a = (xs * np.cos(tex_angle) + ys * np.sin(tex_angle)) * (2 * np.pi / period)
    b = (-xs * np.sin(tex_angle) + ys * np.cos(tex_angle)) * (2 * np.pi / period)
    pattern = np.zeros((n, size, size), dtype=np.float32)
    t = texture[:, None, None]
    pattern = np.where(t == 1, np.sin(a) > 0, pattern)
    pattern = np.where(t == 2, (np.sin(a) > 0) ^ (np.sin(b) > 0), pattern)
    pattern = np.where(t == 3, (np.cos(a) + np.cos(b)) > 1.0, pattern).astype(np.float32)

    background = _rgb(rng, n).astype(np.float32)
    colour_a = _rgb(rng, n).astype(np.float32)
    colour_b = _rgb(rng, n).astype(np.float32)
    for colour in (colour_a, colour_b):
        close = np.linalg.norm(colour - background, axis=1) < 0.45
        colour[close] = np.where(
            background[close] > 0.5, background[close] - 0.5, background[close] + 0.5
        )
        np.clip(colour, 0.0, 1.0, out=colour)

    gradient_dir = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    gradient = (
        ((xs - size / 2) * np.cos(gradient_dir) + (ys - size / 2) * np.sin(gradient_dir))
        / size
        * rng.uniform(0.0, 0.3, n).astype(np.float32)[:, None, None]
    )

    pattern = pattern[:, None]  # (N, 1, H, W)
    fg = colour_a[:, :, None, None] * (1 - pattern) + colour_b[:, :, None, None] * pattern
    bg = background[:, :, None, None] + gradient[:, None]
    images = np.where(masks[:, None], fg, bg)
    sigma = rng.uniform(*noise, n).astype(np.float32)[:, None, None, None]
    images = images + sigma * rng.standard_normal(images.shape, dtype=np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return ShapeImages(
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
        torch.from_numpy(labels.copy()),
        torch.from_numpy(masks),
        tuple(shape_names),
    )


def make_dataset(
    class_names: Sequence[str],
    n_per_class: int,
    *,
    seed: int | Sequence[int],
    size: int = 32,
) -> ShapeImages:
    """A balanced, shuffled set: ``n_per_class`` images of each of ``class_names``."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(class_names)), n_per_class)
    rng.shuffle(labels)
    return render(class_names, labels, seed=rng.integers(0, 2**63 - 1), size=size)


def _stream(task: str, split: str, seed: int) -> list[int]:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {tuple(_SPLITS)}, got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return [int(seed), _TASKS[task], _SPLITS[split]]


def source_task(
    *, n_per_class: int = 600, seed: int = 0, split: str = "train", size: int = 32
) -> ShapeImages:
    """The source task: the 8 shapes of :data:`SOURCE_CLASSES`, ``n_per_class`` images each.

    Args:
        n_per_class: labelled images per class.
        seed: the data seed; with ``split`` it fixes every pixel.
        split: ``"train"``, ``"val"`` or ``"test"`` — independent draws for the same seed.
        size: image size in pixels.
    """
    return make_dataset(SOURCE_CLASSES, n_per_class, seed=_stream("source", split, seed), size=size)


def target_task(
    *, shots: int = 10, n_test_per_class: int = 200, seed: int = 0, size: int = 32
) -> TargetTask:
    """The few-shot target task: the 5 new shapes of :data:`TARGET_CLASSES`.

    Args:
        shots: labelled training images per class (the lecture's "very little data": 5-20).
        n_test_per_class: held-out test images per class.
        seed: the data seed.
        size: image size in pixels.

    Returns:
        :class:`TargetTask` ``(train, test)``, drawn independently.
    """
    train = make_dataset(TARGET_CLASSES, shots, seed=_stream("target", "train", seed), size=size)
    test = make_dataset(
        TARGET_CLASSES, n_test_per_class, seed=_stream("target", "test", seed), size=size
    )
    return TargetTask(train, test)
