"""Result records: what grading produces and every renderer consumes.

A :class:`Result` is one exercise of one submission; a :class:`SubmissionResult` is all of
them plus the seed that makes the run repeatable. Both are frozen and hold plain data only,
so they serialise to JSON (``to_dict``) and back (``from_dict``) without loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    """Outcome of one exercise. The values are the ``status`` strings of the JSON contract."""

    PASSED = "passed"
    FAILED = "failed"  # ran, returned data, data is wrong
    NOT_IMPLEMENTED = "not_implemented"  # the stub's NotImplementedError
    ERROR = "error"  # student code raised, wrong signature, missing function, bad output type
    TIMEOUT = "timeout"  # killed at the wall or CPU limit
    MEMORY = "memory"  # ran out of its memory limit
    CRASHED = "crashed"  # died by a signal (segfault, abort) or exited without a result
    GRADER_ERROR = "grader_error"  # the grader failed; never a score

    def __str__(self) -> str:  # so f"{status}" prints "passed", not "Status.PASSED"
        return self.value


@dataclass(frozen=True)
class Result:
    """One exercise of one submission.

    Attributes:
        name: exercise name (registry key), e.g. ``"maxpool2d_backward"``.
        score: points earned, ``0 <= score <= max_score``.
        max_score: points available.
        status: see :class:`Status`.
        feedback: one readable paragraph: what was checked, what went wrong, and, when a
            known mistake explains the output, its name and how to fix it.
        mistake: slug of the known mistake the output matched (``None`` if none did).
        output: the student's captured stdout/stderr, capped and decoded with replacement.
        wall_s: wall time of the child run(s), seconds.
    """

    name: str
    score: float
    max_score: float
    status: Status
    feedback: str
    mistake: str | None = None
    output: str = ""
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(**{**d, "status": Status(d["status"])})


@dataclass(frozen=True)
class SubmissionResult:
    """All graded exercises of one submission.

    Attributes:
        seed: the seed every input was drawn from; ``cnnlab grade --seed`` repeats the run.
        exercises: one :class:`Result` per graded exercise, in registry order.
        source: the path that was graded, as given.
        student: student id when known (batch grading, per-student seeds), else ``None``.
    """

    seed: int
    exercises: tuple[Result, ...]
    source: str = ""
    student: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return float(sum(r.score for r in self.exercises))

    @property
    def max_score(self) -> float:
        return float(sum(r.max_score for r in self.exercises))

    @property
    def all_passed(self) -> bool:
        return all(r.passed for r in self.exercises)

    @property
    def has_grader_error(self) -> bool:
        return any(r.status is Status.GRADER_ERROR for r in self.exercises)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document of DESIGN.md (plus a few extra keys)."""
        return {
            "score": self.score,
            "max_score": self.max_score,
            "seed": self.seed,
            "source": self.source,
            "student": self.student,
            "exercises": [r.to_dict() for r in self.exercises],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SubmissionResult:
        return cls(
            seed=int(d["seed"]),
            exercises=tuple(Result.from_dict(r) for r in d["exercises"]),
            source=d.get("source", ""),
            student=d.get("student"),
        )
