"""Max and average pooling: forward and backward passes in numpy (NCHW, no padding).

Output size: ``OH = floor((H - p_h) / s_h) + 1`` (same for width); ``stride=None`` means
``stride = pool_size``. Windows may overlap (stride < pool size).

Max-pool backward sends each upstream gradient to the **first** maximum of its window in
row-major order (what PyTorch does on CPU), and where windows overlap the gradients
**accumulate** (the lecture's +1, +3, +4). Average-pool backward spreads each upstream
gradient evenly, ``dout / (p_h p_w)``, over its window.

Vectorized: the only Python loops are over the ``p_h * p_w`` offsets inside a window (each
offset's elements of all windows at once); max-pool backward scatters every gradient to the
flat index of its window's maximum with one ``np.bincount``. Every public function is
self-contained (numpy and this module's private helpers), because the exercise generator
copies their source into student solutions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "AvgPoolCache",
    "MaxPoolCache",
    "avgpool2d_backward",
    "avgpool2d_forward",
    "maxpool2d_backward",
    "maxpool2d_forward",
]


class MaxPoolCache(NamedTuple):
    """What :func:`maxpool2d_backward` needs from the forward pass.

    Attributes:
        x: input, shape (N, C, H, W).
        argmax: index of the first maximum inside each window, row-major
            (``row * pool_w + col``), shape (N, C, OH, OW).
        pool_h, pool_w: window size.
        stride_h, stride_w: strides.
    """

    x: np.ndarray
    argmax: np.ndarray
    pool_h: int
    pool_w: int
    stride_h: int
    stride_w: int


class AvgPoolCache(NamedTuple):
    """What :func:`avgpool2d_backward` needs: the input ``x`` (N, C, H, W), window and strides."""

    x: np.ndarray
    pool_h: int
    pool_w: int
    stride_h: int
    stride_w: int


def _pair(value: object, name: str) -> tuple[int, int]:
    """A positive int or a pair of them as ``(h, w)``; ValueError otherwise."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be a positive int or a pair (h, w), got {value!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not hasattr(item, "__index__") or int(item) < 1:
            raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
        out.append(int(item))
    return out[0], out[1]


def _pool_setup(
    x: object, pool_size: object, stride: object
) -> tuple[np.ndarray, int, int, int, int]:
    """Validate the arguments shared by both poolings; returns ``(x, ph, pw, sh, sw)``."""
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        got = f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"x must be a numpy array of shape (N, C, H, W), got {got}")
    ph, pw = _pair(pool_size, "pool_size")
    sh, sw = _pair(pool_size if stride is None else stride, "stride")
    if ph > x.shape[2] or pw > x.shape[3]:
        raise ValueError(
            f"pool_size {ph}x{pw} is larger than the input {x.shape[2]}x{x.shape[3]}; "
            "use a smaller pool_size"
        )
    return x, ph, pw, sh, sw


def _scatter(dout_parts, shape, ph, pw, sh, sw, dtype) -> np.ndarray:
    """Sum ``dout_parts(u, v)`` (N, C, OH, OW) onto offset (u, v) of every window."""
    n, c, h, w = shape
    dx = np.zeros((n, c, h, w), dtype=dtype)
    for u in range(ph):
        for v in range(pw):
            part = dout_parts(u, v)
            oh, ow = part.shape[2], part.shape[3]
            dx[:, :, u : u + sh * (oh - 1) + 1 : sh, v : v + sw * (ow - 1) + 1 : sw] += part
    return dx


def _window_planes(
    x: np.ndarray, ph: int, pw: int, sh: int, sw: int, oh: int, ow: int
) -> list[np.ndarray]:
    """Element (u, v) of every window, for each offset in row-major order: (N, C, OH, OW)."""
    if sh == ph and sw == pw:
        n, c = x.shape[:2]
        tiles = x[:, :, : oh * ph, : ow * pw].reshape(n, c, oh, ph, ow, pw)
        planes = np.ascontiguousarray(tiles.transpose(3, 5, 0, 1, 2, 4))
        return list(planes.reshape(ph * pw, n, c, oh, ow))
    return [
        x[:, :, u : u + sh * (oh - 1) + 1 : sh, v : v + sw * (ow - 1) + 1 : sw]
        for u in range(ph)
        for v in range(pw)
    ]


def maxpool2d_forward(
    x: np.ndarray, *, pool_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
) -> tuple[np.ndarray, MaxPoolCache]:
    """Forward pass of max pooling, like ``torch.nn.functional.max_pool2d`` (no padding).

    Args:
        x: input, shape (N, C, H, W).
        pool_size: window p or ``(p_h, p_w)``.
        stride: s or ``(s_h, s_w)``; ``None`` means ``pool_size``.

    Returns:
        ``(out, cache)``: ``out`` of shape (N, C, OH, OW) with
        ``OH = floor((H - p_h) / s_h) + 1``, and a :class:`MaxPoolCache`.

    Raises:
        ValueError: ``x`` is not 4-D, a hyperparameter is not a positive int, or the window
            is larger than the input.
    """
    x, ph, pw, sh, sw = _pool_setup(x, pool_size, stride)
    n, c, h, w = x.shape
    oh, ow = (h - ph) // sh + 1, (w - pw) // sw + 1
    if x.dtype.kind in "fiu" and x.size:
        # The window offsets (u, v) as planes (N, C, OH, OW); contiguous copies when the
        # windows do not overlap (strided operands are slow), views otherwise.
        planes = _window_planes(x, ph, pw, sh, sw, oh, ow)
        out = planes[0].copy()
        for plane in planes[1:]:
            np.maximum(out, plane, out=out)
        if x.dtype.kind != "f" or not np.isnan(out).any():
            # First maximum in row-major order = the number of leading planes below it.
            below = planes[0] != out
            count = below.astype(np.int8 if len(planes) < 128 else np.intp)  # narrow: fast
            unequal = np.empty_like(below)
            for plane in planes[1:-1]:
                np.not_equal(plane, out, out=unequal)
                below &= unequal
                count += below
            argmax = count.astype(np.intp, copy=False)
            zero = out == 0
            if x.dtype.kind == "f" and zero.any():  # 0.0 ties -0.0: keep the first one's sign
                for offset, plane in enumerate(planes):
                    np.copyto(out, plane, where=zero & (argmax == offset))
            return out, MaxPoolCache(x, argmax, ph, pw, sh, sw)
    # NaN (the first NaN is the maximum, as in numpy and PyTorch) or another dtype.
    win = np.lib.stride_tricks.sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::sh, ::sw]
    flat = win.reshape(*win.shape[:4], ph * pw)  # copies: (N, C, OH, OW, ph*pw)
    argmax = flat.argmax(axis=-1)  # first maximum in row-major order
    out = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return out, MaxPoolCache(x, argmax, ph, pw, sh, sw)


def maxpool2d_backward(dout: np.ndarray, cache: MaxPoolCache) -> np.ndarray:
    """Backward pass of :func:`maxpool2d_forward`.

    Each ``dout[n, c, i, j]`` goes to the first maximum of window (i, j); overlapping windows
    accumulate at a shared maximum.

    Args:
        dout: upstream gradient, shape (N, C, OH, OW).
        cache: the cache returned by the forward pass.

    Returns:
        dx, shape (N, C, H, W).
    """
    argmax = cache.argmax
    if not isinstance(dout, np.ndarray) or dout.shape != argmax.shape:
        raise ValueError(
            f"dout must have the forward output's shape {argmax.shape}, "
            f"got {getattr(dout, 'shape', None)}"
        )
    n, c, h, w = cache.x.shape
    ph, pw, sh, sw = cache.pool_h, cache.pool_w, cache.stride_h, cache.stride_w
    oh, ow = argmax.shape[2], argmax.shape[3]
    dtype = np.result_type(dout, cache.x)
    if dtype.kind == "f" and dtype.itemsize <= 8 and argmax.size:
        # Flat index of each window's maximum in x; bincount sums the gradients landing on
        # the same element (overlapping windows) and leaves zeros elsewhere.
        offsets = (np.arange(ph).reshape(ph, 1) * w + np.arange(pw)).ravel()
        target = offsets.take(argmax)  # (N, C, OH, OW)
        target += (np.arange(n * c).reshape(n, c, 1) * (h * w) + np.arange(oh) * (sh * w))[
            ..., None
        ]
        target += np.arange(ow) * sw
        dx = np.bincount(target.ravel(), weights=dout.ravel(), minlength=n * c * h * w)
        return dx.reshape(n, c, h, w).astype(dtype, copy=False)
    zero = np.zeros((), dtype=dout.dtype)
    return _scatter(
        lambda u, v: np.where(argmax == u * pw + v, dout, zero),
        cache.x.shape,
        ph,
        pw,
        sh,
        sw,
        dtype,
    )


def avgpool2d_forward(
    x: np.ndarray, *, pool_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
) -> tuple[np.ndarray, AvgPoolCache]:
    """Forward pass of average pooling, like ``torch.nn.functional.avg_pool2d`` (no padding).

    Args:
        x: input, shape (N, C, H, W).
        pool_size: window p or ``(p_h, p_w)``.
        stride: s or ``(s_h, s_w)``; ``None`` means ``pool_size``.

    Returns:
        ``(out, cache)``: ``out`` of shape (N, C, OH, OW), the mean of each window.
    """
    x, ph, pw, sh, sw = _pool_setup(x, pool_size, stride)
    win = np.lib.stride_tricks.sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::sh, ::sw]
    return win.mean(axis=(-2, -1)), AvgPoolCache(x, ph, pw, sh, sw)


def avgpool2d_backward(dout: np.ndarray, cache: AvgPoolCache) -> np.ndarray:
    """Backward pass of :func:`avgpool2d_forward`: ``dout / (p_h p_w)`` to every window element.

    Args:
        dout: upstream gradient, shape (N, C, OH, OW).
        cache: the cache returned by the forward pass.

    Returns:
        dx, shape (N, C, H, W).
    """
    n, c, h, w = cache.x.shape
    ph, pw, sh, sw = cache.pool_h, cache.pool_w, cache.stride_h, cache.stride_w
    expected = (n, c, (h - ph) // sh + 1, (w - pw) // sw + 1)
    if not isinstance(dout, np.ndarray) or dout.shape != expected:
        raise ValueError(
            f"dout must have the forward output's shape {expected}, "
            f"got {getattr(dout, 'shape', None)}"
        )
    share = dout / (ph * pw)
    return _scatter(
        lambda u, v: share, cache.x.shape, ph, pw, sh, sw, np.result_type(dout, cache.x)
    )
