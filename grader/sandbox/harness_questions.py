"""Child-side harness of the numeric questions (``grader.exercises.questions``).

Runs inside the sandboxed child, like :mod:`grader.sandbox.harness`: numpy only, no reference code.
A question is answered by a zero-argument function returning a number; the case (the
question's numbers) stays in the parent's reference and is not passed to the student.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grader.sandbox.harness import BadReturn, Getter, as_array, harness


@harness("question")
def question(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Call ``function()`` and return its number as ``{"answer": array}``.

    A float with an integral value (``3216.0``, e.g. from ``/``) counts as that integer; any
    other float is returned as is and fails the integer comparison with a readable message.
    """
    del case  # the numbers are in the question's text; the answer takes no arguments
    value = get(function)()
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        value = int(value)
    if value is None:
        raise BadReturn(f"{function}() returned None: make it return your answer (an int)")
    return {"answer": as_array(value, f"the answer of {function}()")}
