"""The baseline of ``bench_batch``: nbgrader test cells that assert in the student's kernel.

What instructors write by hand costs the same: call the student's function in the notebook's
kernel on a few inputs and ``assert`` that the outputs are close to known ones. Here each test
cell does that for every check case of its exercise (the cases saved by ``bench_batch`` for the
problem set's seed, ``$CNNLAB_PLAIN_CASES``): no sandbox, no separate process, all-or-nothing
points. It exists only to be measured; student code runs unprotected in the kernel.
"""

from __future__ import annotations

import copy
import os
from typing import Any

#: Source of one plain test cell.
CELL = (
    "# plain assert test: runs your function in this kernel (no sandbox)\n"
    "from bench.plain_asserts import assert_exercise\n"
    "\n"
    "assert_exercise({name!r}, globals())"
)
_PREPARED: dict[str, Any] = {}


def assert_exercise(exercise: str, namespace: dict[str, Any]) -> None:
    """``assert`` that the student's code in ``namespace`` passes every case of ``exercise``."""
    from grader import engine
    from grader.compare import check_outputs
    from grader.sandbox.harness import HARNESSES, MissingFunction, import_harness_modules

    if not _PREPARED:
        from grader.problemset.public_cases import load_prepared

        _, prepared = load_prepared(os.environ["CNNLAB_PLAIN_CASES"])
        _PREPARED.update({p.name: p for p in prepared})
    prepared = _PREPARED[exercise]
    if prepared.harness not in HARNESSES:
        import_harness_modules()

    def get(name: str) -> Any:
        if name not in namespace:
            raise MissingFunction(f"no function named {name!r} in the notebook")
        return namespace[name]

    for case in prepared.cases:
        outputs = HARNESSES[prepared.harness](get, prepared.function, copy.deepcopy(case.inputs))
        received, problem = engine._postprocess(prepared, case, outputs)
        problem = problem or check_outputs(
            case.expected, received, rtol=prepared.rtol, atol=prepared.atol
        )
        assert problem is None, f"{exercise}: {problem}"
