"""Result records: what grading produces and every renderer consumes.

A :class:`Result` is one exercise of one submission; a :class:`SubmissionResult` is all of
them plus the seed that makes the run repeatable. Both are frozen and hold plain data only,
so they serialise to JSON (``to_dict``) and back (``from_dict``) without loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

#: A small map as nested rows of plain numbers (JSON-friendly).
Rows = tuple[tuple[float, ...], ...]


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
class Picture:
    """One small map of a failed case, kept so that renderers can draw expected and received
    side by side with the differing cells marked (the grading already decided which differ).

    A map is the last two axes of an output (a 1-d output is one row); only maps of at most
    :data:`grader.compare.PICTURE_SIDE` cells per side are kept.

    Attributes:
        output: the output's name, e.g. ``"dx"``.
        index: the leading index of the map in the output, e.g. ``(0, 1)`` for ``dx[0, 1]``
            (empty for an output of one or two dimensions).
        case: the case number, from 1.
        label: what the case is (its label).
        expected: the reference's map, as rows.
        received: the student's map, as rows.
        differs: ``True`` where the received value is outside the tolerance.
        integer: the values are whole numbers (shown without decimals).
    """

    output: str
    index: tuple[int, ...]
    case: int
    label: str
    expected: Rows
    received: Rows
    differs: tuple[tuple[bool, ...], ...]
    integer: bool = False

    @property
    def title(self) -> str:
        """``"dx[0, 1]"`` or ``"dx"``."""
        if not self.index:
            return self.output
        return f"{self.output}[{', '.join(str(i) for i in self.index)}]"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Picture:
        def rows(value: Any) -> tuple:
            return tuple(tuple(row) for row in value)

        return cls(
            output=str(d["output"]),
            index=tuple(int(i) for i in d["index"]),
            case=int(d["case"]),
            label=str(d.get("label", "")),
            expected=rows(d["expected"]),
            received=rows(d["received"]),
            differs=tuple(tuple(bool(v) for v in row) for row in d["differs"]),
            integer=bool(d.get("integer", False)),
        )


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
        mistake: slug of the known mistake the output matched (``None`` if none did, or if
            several did and the cases cannot tell them apart: see ``possible_mistakes``).
        output: the student's captured stdout/stderr, capped and decoded with replacement.
        wall_s: wall time of the child run(s), seconds.
        possible_mistakes: when more than one known mistake explains the output equally well,
            all of their slugs (the feedback names every one of them); else empty.
        pictures: small maps of the first failing case, expected next to received (see
            :class:`Picture`); empty when the output is a number or too large to read.
    """

    name: str
    score: float
    max_score: float
    status: Status
    feedback: str
    mistake: str | None = None
    output: str = ""
    wall_s: float = 0.0
    possible_mistakes: tuple[str, ...] = ()
    pictures: tuple[Picture, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        d["possible_mistakes"] = list(self.possible_mistakes)
        d["pictures"] = [
            {
                **asdict(p),
                "index": list(p.index),
                "expected": [list(r) for r in p.expected],
                "received": [list(r) for r in p.received],
                "differs": [list(r) for r in p.differs],
            }
            for p in self.pictures
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        d = dict(d)
        pictures = tuple(Picture.from_dict(p) for p in d.pop("pictures", None) or ())
        possible = tuple(str(m) for m in d.pop("possible_mistakes", None) or ())
        return cls(
            **{**d, "status": Status(d["status"])},
            possible_mistakes=possible,
            pictures=pictures,
        )


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
