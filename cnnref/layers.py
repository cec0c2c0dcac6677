"""Convolution, fully connected and ReLU layers: forward and backward passes in numpy.

Arrays are NCHW float64. Each ``*_forward`` returns ``(out, cache)`` and each ``*_backward``
takes ``(dout, cache)``; caches are NamedTuples of plain arrays and ints.

The convolution is cross-correlation (as in PyTorch and every deep-learning library), with
output size ``floor((H + pad_top + pad_bottom - d_h(k_h - 1) - 1) / s_h) + 1`` (and the same
for width). It is vectorized with im2col: the windows are gathered, channels first, with
``np.lib.stride_tricks.sliding_window_view`` and the products done by one matrix product per
example; the only Python loop is over the ``k_h * k_w`` kernel offsets in the backward pass.

Every public function is self-contained (numpy and this module's private helpers), because
the exercise generator copies their source into student solutions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "Conv2dCache",
    "DenseCache",
    "ReluCache",
    "conv2d_backward",
    "conv2d_forward",
    "dense_backward",
    "dense_forward",
    "relu_backward",
    "relu_forward",
]


class Conv2dCache(NamedTuple):
    """What :func:`conv2d_backward` needs from the forward pass.

    Attributes:
        x: input, shape (N, C, H, W) (unpadded).
        w: filters, shape (F, C, KH, KW).
        stride_h, stride_w: strides.
        pad_top, pad_bottom, pad_left, pad_right: zero padding actually applied.
        dilation_h, dilation_w: dilations.
    """

    x: np.ndarray
    w: np.ndarray
    stride_h: int
    stride_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    dilation_h: int
    dilation_w: int


class DenseCache(NamedTuple):
    """What :func:`dense_backward` needs: input ``x`` (N, ...) and weights ``w`` (D_in, D_out)."""

    x: np.ndarray
    w: np.ndarray


class ReluCache(NamedTuple):
    """What :func:`relu_backward` needs: the input ``x`` of any shape."""

    x: np.ndarray


def _pair(value: object, name: str, *, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints (each >= ``minimum``) as ``(h, w)``; ValueError otherwise."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not hasattr(item, "__index__") or int(item) < minimum:
            kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
            raise ValueError(f"{name} must be {kind} or a pair of them, got {value!r}")
        out.append(int(item))
    return out[0], out[1]


def _check_array(a: object, name: str, ndim: int, shape_doc: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise ValueError(
            f"{name} must be a numpy array of shape {shape_doc}, got {type(a).__name__}"
        )
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {shape_doc}, got shape {a.shape}")
    return a


def _conv_padding(
    padding: object, in_hw: tuple[int, int], k_eff: tuple[int, int], stride: tuple[int, int]
) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` for an int, a pair, ``"valid"`` or ``"same"`` (TF split)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0, 0, 0
        if mode != "same":
            raise ValueError(f'padding must be an int, a pair, "same" or "valid", got {padding!r}')
        pads = []
        for n, k, s in zip(in_hw, k_eff, stride, strict=True):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return pads[0], pads[1], pads[2], pads[3]
    ph, pw = _pair(padding, "padding", minimum=0)
    return ph, ph, pw, pw


def _im2col(x: np.ndarray, kh: int, kw: int, cache: Conv2dCache) -> np.ndarray:
    """Every receptive window as a column, channels first: (N, C*KH*KW, OH*OW), a copy.

    Rows are ``(c, u, v)`` in the order of ``w.reshape(F, -1)``; columns are the output
    positions ``(i, j)`` in row-major order, so the copy's inner loop runs along a row.
    """
    pt, pb, pl, pr = cache.pad_top, cache.pad_bottom, cache.pad_left, cache.pad_right
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if pt + pb + pl + pr else x
    ext_h = cache.dilation_h * (kh - 1) + 1
    ext_w = cache.dilation_w * (kw - 1) + 1
    view = np.lib.stride_tricks.sliding_window_view(xp, (ext_h, ext_w), axis=(2, 3))
    win = view[
        :, :, :: cache.stride_h, :: cache.stride_w, :: cache.dilation_h, :: cache.dilation_w
    ]  # (N, C, OH, OW, KH, KW), no copy
    n, c, oh, ow = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c * kh * kw, oh * ow)


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
) -> tuple[np.ndarray, Conv2dCache]:
    """Forward pass of a 2-D convolution (cross-correlation), like ``torch.nn.functional.conv2d``.

    ``out[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] *
    xpad[n, c, i*s_h + u*d_h, j*s_w + v*d_w]``, with
    ``OH = floor((H + pad_top + pad_bottom - d_h(KH - 1) - 1) / s_h) + 1`` (same for OW).

    Args:
        x: input, shape (N, C, H, W).
        w: filters, shape (F, C, KH, KW).
        b: biases, shape (F,).
        stride: s or ``(s_h, s_w)``, each >= 1.
        padding: zeros added on each side: p, ``(p_h, p_w)``, ``"valid"`` (none) or
            ``"same"`` (output ``ceil(H / s_h)``; an odd total puts the extra pixel at the
            bottom/right, as TensorFlow does).
        dilation: d or ``(d_h, d_w)``, each >= 1.

    Returns:
        ``(out, cache)``: ``out`` of shape (N, F, OH, OW) and a :class:`Conv2dCache`.

    Raises:
        ValueError: wrong rank, mismatched channels or bias length, a bad hyperparameter, or a
            kernel larger than the padded input.
    """
    x = _check_array(x, "x", 4, "(N, C, H, W)")
    w = _check_array(w, "w", 4, "(F, C, KH, KW)")
    b = _check_array(b, "b", 1, "(F,)")
    n, c, h, wd = x.shape
    f, wc, kh, kw = w.shape
    if wc != c:
        raise ValueError(
            f"w has {wc} input channels (w.shape[1]) but x has {c} (x.shape[1]); they must match"
        )
    if b.shape[0] != f:
        raise ValueError(f"b must have shape ({f},) to match w's {f} filters, got {b.shape}")
    if min(x.shape + w.shape) == 0:
        raise ValueError(f"x and w must not have empty axes, got x {x.shape}, w {w.shape}")
    sh, sw = _pair(stride, "stride", minimum=1)
    dh, dw = _pair(dilation, "dilation", minimum=1)
    ext_h, ext_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    pt, pb, pl, pr = _conv_padding(padding, (h, wd), (ext_h, ext_w), (sh, sw))
    if ext_h > h + pt + pb or ext_w > wd + pl + pr:
        raise ValueError(
            f"the kernel spans {ext_h}x{ext_w} pixels (kernel {kh}x{kw}, dilation {dh}x{dw}) but "
            f"the padded input is {h + pt + pb}x{wd + pl + pr}; "
            "use a smaller kernel or more padding"
        )
    cache = Conv2dCache(x, w, sh, sw, pt, pb, pl, pr, dh, dw)
    cols = _im2col(x, kh, kw, cache)  # (N, C*KH*KW, OH*OW)
    oh = (h + pt + pb - ext_h) // sh + 1
    ow = (wd + pl + pr - ext_w) // sw + 1
    # One (F, C*KH*KW) @ (C*KH*KW, OH*OW) product per example gives NCHW directly.
    out = np.matmul(w.reshape(f, -1), cols)
    bias = b[:, None]
    if out.dtype == np.result_type(out, bias):
        out += bias
    else:
        out = out + bias
    return out.reshape(n, f, oh, ow), cache


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of :func:`conv2d_forward`.

    Args:
        dout: upstream gradient, shape (N, F, OH, OW).
        cache: the cache returned by the forward pass.

    Returns:
        ``(dx, dw, db)`` of shapes (N, C, H, W), (F, C, KH, KW) and (F,).

    Raises:
        ValueError: ``dout`` does not have the forward output's shape.
    """
    x, w = cache.x, cache.w
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    sh, sw, dh, dw_ = cache.stride_h, cache.stride_w, cache.dilation_h, cache.dilation_w
    pt, pb, pl, pr = cache.pad_top, cache.pad_bottom, cache.pad_left, cache.pad_right
    hp, wp = h + pt + pb, wd + pl + pr
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw_ * (kw - 1) - 1) // sw + 1
    dout = _check_array(dout, "dout", 4, "(N, F, OH, OW)")
    if dout.shape != (n, f, oh, ow):
        raise ValueError(
            f"dout must have the forward output's shape {(n, f, oh, ow)}, got {dout.shape}"
        )
    cols = _im2col(x, kh, kw, cache)  # (N, C*KH*KW, OH*OW)
    dout_cols = dout.reshape(n, f, oh * ow)
    db = dout_cols.sum(axis=(0, 2))
    dw = np.matmul(dout_cols, cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    w_cols = w.reshape(f, -1).T
    if cols.flags.writeable and cols.dtype == np.result_type(w_cols, dout_cols):
        # Reuse the columns' memory: one large fresh array less (page faults cost).
        dcols = np.matmul(w_cols, dout_cols, out=cols)
    else:
        dcols = np.matmul(w_cols, dout_cols)
    dcols = dcols.reshape(n, c, kh, kw, oh, ow)
    # col2im: each kernel offset (u, v) scatters onto a strided slice of the padded input;
    # channels first, so every slice's inner loop runs along a row of OW values.
    dxp = np.zeros((n, c, hp, wp), dtype=np.result_type(dout, w))
    for u in range(kh):
        for v in range(kw):
            r0, c0 = u * dh, v * dw_
            rows = slice(r0, r0 + sh * (oh - 1) + 1, sh)
            columns = slice(c0, c0 + sw * (ow - 1) + 1, sw)
            dxp[:, :, rows, columns] += dcols[:, :, u, v]
    if pt + pb + pl + pr:
        dxp = np.ascontiguousarray(dxp[:, :, pt : pt + h, pl : pl + wd])
    return dxp, dw, db


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, DenseCache]:
    """Forward pass of a fully connected layer: ``out = x.reshape(N, D_in) @ w + b``.

    Args:
        x: input, shape (N, D_in) or (N, d_1, ..., d_k) with ``d_1 * ... * d_k = D_in``
            (flattened per example).
        w: weights, shape (D_in, D_out).
        b: biases, shape (D_out,).

    Returns:
        ``(out, cache)``: ``out`` of shape (N, D_out) and a :class:`DenseCache`.

    Raises:
        ValueError: wrong ranks or sizes that do not match.
    """
    if not isinstance(x, np.ndarray) or x.ndim < 2:
        raise ValueError(
            "x must be a numpy array of shape (N, D_in), "
            f"got {getattr(x, 'shape', type(x).__name__)}"
        )
    w = _check_array(w, "w", 2, "(D_in, D_out)")
    b = _check_array(b, "b", 1, "(D_out,)")
    d_in = int(np.prod(x.shape[1:]))
    if w.shape[0] != d_in:
        raise ValueError(
            f"w must have {d_in} rows (x has {d_in} features per example), got w.shape {w.shape}"
        )
    if b.shape[0] != w.shape[1]:
        raise ValueError(f"b must have shape ({w.shape[1]},) to match w's columns, got {b.shape}")
    out = x.reshape(x.shape[0], d_in) @ w + b
    return out, DenseCache(x, w)


def dense_backward(
    dout: np.ndarray, cache: DenseCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of :func:`dense_forward`.

    Args:
        dout: upstream gradient, shape (N, D_out).
        cache: the cache returned by the forward pass.

    Returns:
        ``(dx, dw, db)``: dx with the shape of the forward's ``x``, dw (D_in, D_out), db (D_out,).
    """
    x, w = cache.x, cache.w
    n = x.shape[0]
    dout = _check_array(dout, "dout", 2, "(N, D_out)")
    if dout.shape != (n, w.shape[1]):
        raise ValueError(
            f"dout must have the forward output's shape {(n, w.shape[1])}, got {dout.shape}"
        )
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(n, -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, ReluCache]:
    """Forward pass of ReLU: ``max(x, 0)`` elementwise.

    Args:
        x: input of any shape.

    Returns:
        ``(out, cache)`` with ``out`` the shape of ``x``.
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"x must be a numpy array, got {type(x).__name__}")
    return np.maximum(x, 0), ReluCache(x)


def relu_backward(dout: np.ndarray, cache: ReluCache) -> np.ndarray:
    """Backward pass of ReLU: the gradient flows where ``x > 0`` (at 0 it is 0, as in PyTorch).

    Args:
        dout: upstream gradient, the shape of the forward's input.
        cache: the cache returned by the forward pass.

    Returns:
        dx, the shape of ``x``.
    """
    x = cache.x
    if not isinstance(dout, np.ndarray) or dout.shape != x.shape:
        raise ValueError(
            f"dout must have the forward input's shape {x.shape}, "
            f"got {getattr(dout, 'shape', None)}"
        )
    return np.where(x > 0, dout, 0.0)
