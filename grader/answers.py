"""Answers that can be checked but not read: salted, deliberately slow hashes (scrypt).

The student bundle ships, for each numeric question, a random-looking salt and the scrypt
digest of the answer's canonical text (and of each known mistake's answer, with the same
salt, so that a wrong answer can still be named). Checking an answer costs one scrypt per
candidate text, about 0.1-0.3 s; reading the answer back means trying candidates one by
one at that price. docs/students.md says what this protects and what it does not.

Canonical text (what is hashed):

* an integer answer: its decimal digits, ``"3216"``;
* a float answer: the multiple of a quantum ``q`` (stored beside the digest, derived from the
  answer's 4th significant digit) as ``"k*q"`` with ``k = round(answer / q)``. A student's
  ``x`` is checked against both grid points around it, ``floor(x/q)`` and ``floor(x/q) + 1``,
  so it is accepted whenever it is within half a quantum of the answer, and never when it is
  1.5 quanta or more away.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

__all__ = [
    "DEFAULT_COST",
    "KDF",
    "candidate_texts",
    "digest",
    "float_quantum",
    "reference_text",
]

KDF = "scrypt"
#: scrypt cost: 2**15 x 8 x 128 bytes = 32 MiB of memory and about 0.1-0.3 s per digest on a
#: laptop core (memory-hard, so a GPU does not make guessing much cheaper).
DEFAULT_COST: Mapping[str, int] = {"n": 2**15, "r": 8, "p": 1}
_MAXMEM = 256 * 1024 * 1024
#: Significant digits a float answer must match (the quantum is one unit of the last one).
FLOAT_DIGITS = 4


def digest(text: str, salt: bytes, cost: Mapping[str, int] = DEFAULT_COST) -> str:
    """scrypt of ``text`` (UTF-8) with ``salt`` and ``cost`` (``n``, ``r``, ``p``), as hex.

    Raises:
        ValueError: a cost scrypt refuses (``n`` not a power of two, too much memory).
    """
    n, r, p = int(cost["n"]), int(cost["r"]), int(cost["p"])
    key = hashlib.scrypt(text.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return key.hex()


def float_quantum(answer: float, digits: int = FLOAT_DIGITS) -> float:
    """One unit of the ``digits``-th significant digit of ``answer`` (``1.0`` for 0)."""
    if answer == 0 or not math.isfinite(answer):
        return 1.0
    return 10.0 ** (math.floor(math.log10(abs(answer))) - digits + 1)


def reference_text(answer: int | float, quantum: float | None) -> str:
    """The canonical text of the right answer (or of a known mistake's answer)."""
    if quantum is None:
        return str(int(answer))
    return f"{round(float(answer) / quantum)}*{quantum!r}"


def candidate_texts(value: int | float, quantum: float | None) -> list[str]:
    """The canonical texts a student's ``value`` is checked as (one for an integer answer,
    the two grid points around it for a float answer); empty when it cannot be an answer."""
    if quantum is None:
        if isinstance(value, float) and not value.is_integer():
            return []
        return [str(int(value))]
    x = float(value)
    if not math.isfinite(x):
        return []
    k = math.floor(x / quantum)
    return [f"{k}*{quantum!r}", f"{k + 1}*{quantum!r}"]
