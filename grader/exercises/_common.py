"""Helpers shared by the exercise modules: labelled cases and output records.

A case is the keyword arguments of one student call. :func:`case` adds a human label under
:data:`grader.engine.CASE_LABEL` (``"_label"``); the engine removes it before the case goes to
the reference, the known mistakes or the child, and shows it in feedback
("case 2 of 5: pool 3x3, stride 1 — overlapping windows").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grader.engine import CASE_LABEL
from grader.registry import Case, Outputs


def case(label: str, **kwargs: Any) -> Case:
    """A case with a label saying what makes it hard (shown when it fails)."""
    return {CASE_LABEL: label, **kwargs}


def int_out(value: int) -> Outputs:
    """An integer answer as the ``{"out": 0-d int64}`` the ``call`` harness produces."""
    return {"out": np.asarray(int(value), dtype=np.int64)}


def kernel_area(kernel_size: int | tuple[int, int]) -> int:
    """``k_h * k_w`` of an int or ``(k_h, k_w)`` kernel size."""
    if isinstance(kernel_size, (tuple, list)):
        return int(kernel_size[0]) * int(kernel_size[1])
    return int(kernel_size) ** 2


def kernel_label(kernel_size: int | tuple[int, int]) -> str:
    if isinstance(kernel_size, (tuple, list)):
        return f"{kernel_size[0]}x{kernel_size[1]}"
    return f"{kernel_size}x{kernel_size}"
