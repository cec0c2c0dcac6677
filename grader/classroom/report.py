"""The class report: one PNG an instructor reads before the next lecture.

Three panels, drawn with matplotlib's Agg backend (no display needed):

1. the distribution of total scores (percent of the maximum), with mean and median;
2. per exercise, the share of students by outcome (passed, failed, error, not implemented,
   timeout/memory/crash) with the mean score, hardest exercise first;
3. how often each known mistake occurred (``Result.mistake``), labelled with the
   mistake's message from the registry, most frequent first.

Grader errors carry no score: they are left out of the distributions and counted in the
title, so a person knows to look.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.classroom.gradebook import GRADER_ERROR, GradedSubmission
from grader.results import Status

#: Outcome groups of panel 2, in stacking order, with their colours.
OUTCOMES: tuple[tuple[str, tuple[Status, ...], str], ...] = (
    ("passed", (Status.PASSED,), "#2e7d32"),
    ("failed", (Status.FAILED,), "#f9a825"),
    ("error", (Status.ERROR,), "#c62828"),
    ("not implemented", (Status.NOT_IMPLEMENTED,), "#9e9e9e"),
    ("timeout / memory / crash", (Status.TIMEOUT, Status.MEMORY, Status.CRASHED), "#6a1b9a"),
    ("grader error", (Status.GRADER_ERROR,), "#212121"),
)

MAX_MISTAKES_SHOWN = 12


@dataclass(frozen=True)
class ExerciseStats:
    """Per-exercise counts for the report.

    Attributes:
        name: exercise name.
        label: ``"number name"`` as shown on the axis.
        counts: outcome group -> number of students.
        mean_fraction: mean score / max score over students with a score (NaN if none).
    """

    name: str
    label: str
    counts: dict[str, int]
    mean_fraction: float


def exercise_stats(
    rows: Sequence[GradedSubmission], exercises: Sequence[Any] | None = None
) -> list[ExerciseStats]:
    """Outcome counts and mean score per exercise (in registry order when ``exercises``
    are given, else in grading order)."""
    by_name: dict[str, list] = {}
    for row in rows:
        for r in row.results:
            by_name.setdefault(r.name, []).append(r)
    order = [s.name for s in exercises] if exercises else list(by_name)
    numbers = {s.name: getattr(s, "number", "") for s in exercises or ()}
    group_of = {st: label for label, statuses, _ in OUTCOMES for st in statuses}
    stats = []
    for name in order:
        results = by_name.get(name, [])
        counts = Counter(group_of[r.status] for r in results)
        scored = [
            r.score / r.max_score
            for r in results
            if r.status is not Status.GRADER_ERROR and r.max_score > 0
        ]
        mean = sum(scored) / len(scored) if scored else float("nan")
        label = f"{numbers.get(name, '')} {name}".strip()
        stats.append(ExerciseStats(name, label, dict(counts), mean))
    return stats


def mistake_counts(
    rows: Iterable[GradedSubmission], exercises: Sequence[Any] | None = None
) -> list[tuple[str, str, int, str]]:
    """``(exercise, mistake slug, count, message)`` most frequent first.

    The message is the registry's (``Mistake.message``); the slug if it is not known.
    """
    counter: Counter[tuple[str, str]] = Counter()
    for row in rows:
        for r in row.results:
            if r.mistake:
                counter[(r.name, r.mistake)] += 1
    messages = {
        (s.name, m.name): m.message for s in exercises or () for m in getattr(s, "mistakes", ())
    }
    return [
        (ex, slug, n, messages.get((ex, slug), slug))
        for (ex, slug), n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def write_report(
    path: str | Path,
    rows: Sequence[GradedSubmission],
    *,
    exercises: Sequence[Any] | None = None,
    title: str = "",
) -> Path:
    """Draw the report of ``rows`` to the PNG ``path`` (written atomically).

    Args:
        path: the ``.png`` to write.
        rows: gradebook rows (one per student).
        exercises: the registry specs graded (order, numbers and mistake messages).
        title: first line of the figure title.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    path = Path(path)
    stats = exercise_stats(rows, exercises)
    mistakes = mistake_counts(rows, exercises)
    shown = mistakes[:MAX_MISTAKES_SHOWN]

    totals = [
        100.0 * r.score / r.max_score
        for r in rows
        if r.status != GRADER_ERROR and r.score is not None and r.max_score > 0
    ]
    n_flagged = sum(1 for r in rows if r.status == GRADER_ERROR)

    ex_height = max(2.2, 0.38 * len(stats) + 1.2)
    mis_height = max(1.6, 0.62 * len(shown) + 1.2)
    fig = Figure(figsize=(13, 4.2 + max(ex_height - 4.2, 0) + mis_height), dpi=110)
    grid = fig.add_gridspec(
        2,
        2,
        height_ratios=[max(ex_height, 4.2), mis_height],
        width_ratios=[1, 1.35],
        hspace=0.35,
        wspace=0.5,
    )
    heading = title or "Class report"
    sub = f"{len(rows)} submissions"
    if n_flagged:
        sub += f" · {n_flagged} with a grader error (no score, left out: regrade them)"
    fig.suptitle(f"{heading}\n{sub}", fontsize=12, x=0.02, ha="left")

    # 1. total score distribution
    ax = fig.add_subplot(grid[0, 0])
    if totals:
        bins = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.0001]
        ax.hist(totals, bins=bins, color="#1565c0", edgecolor="white")
        mean = sum(totals) / len(totals)
        median = sorted(totals)[len(totals) // 2]
        ax.axvline(mean, color="#e65100", linestyle="--", label=f"mean {mean:.0f}%")
        ax.axvline(median, color="#2e7d32", linestyle=":", label=f"median {median:.0f}%")
        ax.legend(loc="upper left", fontsize=9, frameon=False)
    else:
        ax.text(0.5, 0.5, "no scores yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 100)
    ax.set_xlabel("total score (% of maximum)")
    ax.set_ylabel("students")
    ax.set_title("Score distribution", loc="left", fontsize=11)
    ax.yaxis.get_major_locator().set_params(integer=True)

    # 2. per-exercise outcomes
    ax = fig.add_subplot(grid[0, 1])
    if stats:
        ordered = list(reversed(stats))  # first exercise at the top
        labels = [s.label for s in ordered]
        left = [0.0] * len(ordered)
        for group, _, colour in OUTCOMES:
            widths = []
            for s in ordered:
                n = sum(s.counts.values())
                widths.append(100.0 * s.counts.get(group, 0) / n if n else 0.0)
            if any(widths):
                ax.barh(labels, widths, left=left, color=colour, label=group, height=0.7)
                left = [a + b for a, b in zip(left, widths, strict=True)]
        for y, s in enumerate(ordered):
            mean = "—" if s.mean_fraction != s.mean_fraction else f"{100 * s.mean_fraction:.0f}%"
            ax.text(101, y, f"mean {mean}", va="center", fontsize=8)
        ax.set_xlim(0, 100)
        if any(left):
            ax.legend(
                loc="upper center",
                bbox_to_anchor=(0.5, -0.06),
                ncol=3,
                fontsize=8,
                frameon=False,
            )
    ax.set_title("Outcome per exercise (% of students)", loc="left", fontsize=11)
    ax.tick_params(axis="y", labelsize=8)

    # 3. known mistakes
    ax = fig.add_subplot(grid[1, :])
    if shown:
        ordered_mistakes = list(reversed(shown))  # most frequent at the top
        counts = [n for _, _, n, _ in ordered_mistakes]
        ys = range(len(ordered_mistakes))
        ax.barh(ys, counts, color="#ef6c00", height=0.42)
        ax.set_yticks(ys, [ex for ex, _, _, _ in ordered_mistakes], fontsize=8)
        for y, (_, slug, n, message) in enumerate(ordered_mistakes):
            ax.text(n, y, f" {n}", va="center", fontsize=8)
            ax.text(
                0,
                y + 0.27,
                textwrap.shorten(f"{message}  [{slug}]", width=150, placeholder="…"),
                va="bottom",
                fontsize=7.5,
                style="italic",
                color="#424242",
            )
        ax.set_ylim(-0.5, len(ordered_mistakes) - 0.1)
        ax.set_xlim(0, max(counts) * 1.08 + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        more = ""
        if len(mistakes) > len(shown):
            more = f" (top {MAX_MISTAKES_SHOWN} of {len(mistakes)})"
        ax.set_title(f"Known mistakes, how many students made each{more}", loc="left", fontsize=11)
        ax.set_xlabel("students")
    else:
        ax.set_axis_off()
        ax.set_title("Known mistakes", loc="left", fontsize=11)
        ax.text(
            0.0,
            0.5,
            "no known mistake was recognised in these submissions",
            transform=ax.transAxes,
            fontsize=10,
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
