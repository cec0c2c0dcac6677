"""Grading a class: `cnnlab batch` against `nbgrader autograde`, on the same notebooks.

One nbgrader course is generated from the problem set's nbgrader source notebooks
(``solutions/notebooks``): ``nbgrader generate_assignment`` makes the release, and N student
submissions are written to ``submitted/<student>/cnn/`` as release notebooks with the answer
cells filled in: correct ones, partly wrong ones (known mistakes from
``tests/fixtures/submissions/mistakes``, unfinished exercises, wrong numeric answers) and
hostile ones (endless loop, ``sys.exit`` at import, memory blow-up, a flood of output,
``os._exit``, fake "PASSED" output).

* ``cnnlab batch`` grades the whole class, at several class sizes with ``--jobs 2`` and once
  with ``--jobs 1``;
* ``nbgrader autograde`` grades a stated sample of the same submissions (it runs every
  notebook in a kernel, and each test cell calls cnnlab's sandbox in a new process, so it is
  slow); its time per submission is extrapolated to the class, and its scores are compared
  with cnnlab's on the sample.

Run ``python -m bench.bench_batch`` (200 submissions, nbgrader on 8) or ``--quick`` (20, 2).
Writes the ``batch`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._report import ROOT, machine, write_section

ASSIGNMENT = "cnn"
SEED = 2026  # the seed the committed problem set (and its hidden nbgrader tests) uses
SOURCE_NOTEBOOKS = ROOT / "solutions" / "notebooks"
MISTAKES = ROOT / "tests" / "fixtures" / "submissions" / "mistakes"
HOSTILE_KINDS = ("loop", "exit_at_import", "memory", "print_flood", "os_exit", "fake_pass")
CLI = [sys.executable, "-c", "import sys; from grader.cli import main; sys.exit(main())"]


# -- the course ----------------------------------------------------------------------------


def _run(cmd: list[str], *, cwd: Path, timeout: float = 3600) -> tuple[float, str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_COURSE_SECRET")}
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, errors="replace", env=env, timeout=timeout
    )
    return time.perf_counter() - start, proc.stdout + proc.stderr, proc.returncode


def training_exercises() -> set[str]:
    """Exercises that train a model (left out: the goal is about the non-training ones)."""
    from grader import registry

    return {s.name for s in registry.all_specs() if "training" in s.tags}


def _cell_exercise(cell: dict) -> str | None:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or ""
    return grade_id.removeprefix("test_").removeprefix("describe_") or None


def graded_exercises() -> list[str]:
    """The non-training exercises that have an answer cell in the notebooks."""
    from grader import registry

    answered = set(_solution_sources())
    training = training_exercises()
    return [s.name for s in registry.all_specs() if s.name in answered and s.name not in training]


def make_course(course: Path) -> dict[str, dict]:
    """An nbgrader course with the assignment released; returns the release notebooks."""
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    training = training_exercises()
    for nb_path in sorted(SOURCE_NOTEBOOKS.glob("*.ipynb")):
        doc = json.loads(nb_path.read_text())
        doc["cells"] = [c for c in doc["cells"] if _cell_exercise(c) not in training]
        (course / "source" / ASSIGNMENT / nb_path.name).write_text(json.dumps(doc, indent=1))
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'cnnlab-bench'\n"
        "c.Execute.timeout = 300\n"
    )
    wall, out, code = _run(
        ["nbgrader", "generate_assignment", ASSIGNMENT, "--force"], cwd=course, timeout=600
    )
    if code != 0:
        raise SystemExit(f"nbgrader generate_assignment failed:\n{out[-3000:]}")
    release = course / "release" / ASSIGNMENT
    return {p.name: json.loads(p.read_text()) for p in sorted(release.glob("*.ipynb"))}


def _solution_sources() -> dict[str, str]:
    """grade_id -> the filled-in source of each answer cell."""
    out = {}
    for nb_path in sorted(SOURCE_NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(nb_path.read_text())["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell["cell_type"] == "code" and meta.get("solution"):
                source = "".join(cell["source"])
                lines = [ln for ln in source.splitlines() if "### BEGIN" not in ln]
                lines = [ln for ln in lines if "### END" not in ln]
                out[meta["grade_id"]] = "\n".join(lines) + "\n"
    return out


def _mistake_snippets() -> dict[str, list[str]]:
    snippets: dict[str, list[str]] = {}
    for p in sorted(MISTAKES.glob("*__*.py")):
        function = p.name.split("__")[0]
        snippets.setdefault(function, []).append(p.read_text())
    return snippets


def _hostile(kind: str, function: str) -> tuple[str, str]:
    """(code before the answer, code after it) for one hostile behaviour."""
    redefine = f"\n\n_honest_{function} = {function}\n\ndef {function}(*args, **kwargs):\n"
    if kind == "loop":
        return "", redefine + "    while True:\n        pass\n"
    if kind == "exit_at_import":
        return "import sys\nsys.exit(0)\n", ""
    if kind == "memory":
        return "", redefine + "    import numpy as np\n    return np.ones((1 << 17, 1 << 16))\n"
    if kind == "print_flood":
        return "", redefine + (
            "    print('x' * 2_000_000)\n    print(b'\\xff\\xfe'.decode('latin-1') * 1000)\n"
            f"    return _honest_{function}(*args, **kwargs)\n"
        )
    if kind == "os_exit":
        return "", redefine + "    import os\n    os._exit(0)\n"
    if kind == "fake_pass":
        return "", redefine + "    print('PASSED 100/100')\n    return 0\n"
    raise ValueError(kind)


def make_class(course: Path, release: dict[str, dict], n: int, *, seed: int = 0) -> list[str]:
    """Write ``n`` submissions under ``course/submitted``; returns each student's kind."""
    rng = random.Random(seed)
    solutions = _solution_sources()
    snippets = _mistake_snippets()
    functions = sorted(solutions)
    kinds = []
    for i in range(n):
        roll = rng.random()
        kind = "correct" if roll < 0.4 else "partly_wrong" if roll < 0.8 else "hostile"
        student = f"s{i:04d}"
        answers = dict(solutions)
        if kind == "partly_wrong":
            for function in rng.sample(functions, rng.randint(1, 3)):
                if function in snippets and rng.random() < 0.7:
                    answers[function] += "\n\n" + rng.choice(snippets[function])
                elif function.startswith("q"):
                    answers[function] += f"\n\ndef {function}():\n    return -1\n"
                else:  # left unfinished
                    answers[function] = (
                        f"def {function}(*args, **kwargs):\n    raise NotImplementedError\n"
                    )
        elif kind == "hostile":
            how = HOSTILE_KINDS[i % len(HOSTILE_KINDS)]
            kind = f"hostile:{how}"
            function = rng.choice([f for f in functions if not f.startswith("q")])
            before, after = _hostile(how, function)
            answers[function] = before + answers[function] + after
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        for name, nb in release.items():
            doc = copy.deepcopy(nb)
            for cell in doc["cells"]:
                meta = cell.get("metadata", {}).get("nbgrader", {})
                grade_id = meta.get("grade_id")
                if cell["cell_type"] == "code" and meta.get("solution") and grade_id in answers:
                    cell["source"] = answers[grade_id]
            (folder / name).write_text(json.dumps(doc, indent=1))
        (folder / "timestamp.txt").write_text("2026-11-24 12:00:00.000000 UTC")
        kinds.append(kind)
    return kinds


def subset_course(course: Path, dest: Path, students: list[str]) -> Path:
    """A course folder whose submitted/ holds only ``students`` (for the size series)."""
    shutil.copytree(course, dest, ignore=shutil.ignore_patterns("submitted", "autograded"))
    for s in students:
        shutil.copytree(course / "submitted" / s, dest / "submitted" / s)
    (dest / "nbgrader_config.py").write_text(
        (course / "nbgrader_config.py").read_text().replace(str(course), str(dest))
    )
    return dest


# -- the two graders -----------------------------------------------------------------------


def run_cnnlab(
    course: Path, out: Path, *, jobs: int, exercises: list[str]
) -> tuple[float, dict[str, float | None]]:
    cmd = [*CLI, "batch", str(course), "--out", str(out), "--seed", str(SEED), "-j", str(jobs)]
    for name in exercises:
        cmd += ["-e", name]
    wall, log, code = _run(cmd, cwd=course)
    if code not in (0, 3):
        raise SystemExit(f"cnnlab batch failed ({code}):\n{log[-3000:]}")
    from grader.classroom.gradebook import Gradebook

    with Gradebook(out / "gradebook.sqlite") as book:
        scores = {r.student: r.score for r in book.submissions()}
    return wall, scores


def run_nbgrader(course: Path) -> tuple[float, dict[str, float]]:
    wall, log, code = _run(
        ["nbgrader", "autograde", ASSIGNMENT, "--create", "--force"], cwd=course, timeout=7200
    )
    if code != 0:
        print(f"nbgrader autograde exited {code}:\n{log[-2000:]}", file=sys.stderr)
    from nbgrader.api import Gradebook as NbGradebook

    scores = {}
    with NbGradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            scores[sub.student_id] = float(sub.score)
    return wall, scores


# -- the benchmark -------------------------------------------------------------------------


def _score(x: float | None) -> str:
    return "—" if x is None else f"{x:g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_batch", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 submissions, nbgrader on 2")
    parser.add_argument("--n", type=int, help="class size (default 200, quick 20)")
    parser.add_argument("--nbgrader-sample", type=int, help="nbgrader sample (default 8, quick 2)")
    parser.add_argument("--keep", type=Path, help="keep the generated course in this folder")
    args = parser.parse_args(argv)
    n = args.n or (20 if args.quick else 200)
    k = args.nbgrader_sample or (2 if args.quick else 8)
    sizes = sorted({max(1, n // 4), max(1, n // 2), n})

    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-bench-batch-"))
    try:
        course = tmp / "course"
        print(f"generating an nbgrader course with {n} submissions in {course}", flush=True)
        exercises = graded_exercises()
        release = make_course(course)
        kinds = make_class(course, release, n)
        students = sorted(p.name for p in (course / "submitted").iterdir())
        mix = {
            "correct": kinds.count("correct"),
            "partly wrong": kinds.count("partly_wrong"),
            "hostile": sum(x.startswith("hostile") for x in kinds),
        }

        series = []
        for size in sizes:
            sub = course if size == n else subset_course(course, tmp / f"c{size}", students[:size])
            wall, scores = run_cnnlab(sub, tmp / f"out-j2-{size}", jobs=2, exercises=exercises)
            series.append((size, 2, wall))
            print(f"cnnlab batch --jobs 2, {size} submissions: {wall:.1f} s", flush=True)
        wall1, cnn_scores = run_cnnlab(course, tmp / "out-j1", jobs=1, exercises=exercises)
        series.append((n, 1, wall1))
        print(f"cnnlab batch --jobs 1, {n} submissions: {wall1:.1f} s", flush=True)
        wall2 = next(w for s, j, w in series if s == n and j == 2)

        # nbgrader on a sample stratified over the kinds: correct, partly wrong, hostile, ...
        by_group: dict[str, list[str]] = {}
        for student, kind in zip(students, kinds, strict=True):
            by_group.setdefault(kind.split(":")[0], []).append(student)
        sample: list[str] = []
        while len(sample) < min(k, n):
            for group in ("correct", "partly_wrong", "hostile"):
                pool = [s for s in by_group.get(group, []) if s not in sample]
                if pool and len(sample) < k:
                    sample.append(pool[0])
        sample.sort()
        nb_course = subset_course(course, tmp / "nbgrader", sample)
        nb_wall, nb_scores = run_nbgrader(nb_course)
        print(f"nbgrader autograde, {len(sample)} submissions: {nb_wall:.1f} s", flush=True)
        sample_kinds = [kinds[students.index(s)] for s in sample]
        agree = sum(
            1
            for s in sample
            if s in nb_scores
            and cnn_scores.get(s) is not None
            and abs(nb_scores[s] - cnn_scores[s]) < 1e-6
        )
        per_sample = [
            f"| {s} | {kind} | {_score(cnn_scores.get(s))} | {_score(nb_scores.get(s))} |"
            for s, kind in zip(sample, sample_kinds, strict=True)
        ]
        if args.keep:
            shutil.copytree(course, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # time(n) = fixed + n * per_submission, least squares over the --jobs 2 series
    xs = [size for size, j, _ in series if j == 2]
    ys = [w for _, j, w in series if j == 2]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var_x = sum((x - mean_x) ** 2 for x in xs)
    slope = (
        sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var_x
        if var_x
        else mean_y / mean_x
    )
    fixed = mean_y - slope * mean_x
    at_200 = fixed + 200 * slope if n != 200 else next(w for s, j, w in series if s == n and j == 2)
    nb_per_sub = nb_wall / len(sample)
    nb_extrapolated = nb_per_sub * n
    rate = {1: n / wall1, 2: n / wall2}
    nb_rate = 1.0 / nb_per_sub
    lines = [
        "## Grading a class: `cnnlab batch` vs `nbgrader autograde`",
        "",
        f"Machine: {machine()}.",
        "",
        f"{n} nbgrader submissions of the problem set's {len(release)} notebooks "
        f"({len(exercises)} non-training exercises): {mix['correct']} correct, "
        f"{mix['partly wrong']} partly wrong (known mistakes, unfinished exercises, wrong "
        f"numeric answers), {mix['hostile']} hostile (endless loop, `sys.exit` at import, "
        "memory blow-up, output flood, `os._exit`, fake PASSED). Same seed for both graders. "
        f"nbgrader graded a sample of {len(sample)} ({', '.join(sample_kinds)}), extrapolated "
        "linearly (it grades one notebook after another).",
        "",
        "| grader | submissions | wall time | submissions / min | vs nbgrader |",
        "|---|---:|---:|---:|---:|",
        f"| nbgrader autograde | {len(sample)} measured, {n} extrapolated | "
        f"{nb_wall:.0f} s ({nb_extrapolated:.0f} s for {n}) | {60 * nb_rate:.1f} | 1.0x |",
        f"| cnnlab batch --jobs 1 | {n} | {wall1:.0f} s | {60 * rate[1]:.1f} | "
        f"**{rate[1] / nb_rate:.1f}x** |",
        f"| cnnlab batch --jobs 2 | {n} | {wall2:.0f} s | {60 * rate[2]:.1f} | "
        f"**{rate[2] / nb_rate:.1f}x** |",
        "",
        "How `cnnlab batch --jobs 2` time grows with the class (includes starting the workers):",
        "",
        "| submissions | wall time | seconds / submission |",
        "|---:|---:|---:|",
        *[f"| {s} | {w:.1f} s | {w / s:.2f} |" for s, j, w in series if j == 2],
        "",
        f"Fitted: {fixed:.0f} s to start + {slope:.2f} s per submission. `--jobs 2` over "
        f"`--jobs 1` on {n}: {wall1 / wall2:.2f}x.",
        "",
        f"Scores on the nbgrader sample (cnnlab and nbgrader agree on {agree} of "
        f"{len(sample)}). nbgrader's test cells call the same sandboxed grader, one "
        "`cnnlab grade` process per exercise, which is where its time goes: a kernel per "
        "notebook and a fresh interpreter, torch import and sandbox per exercise, against one "
        "worker per job and one forked child per exercise in `cnnlab batch`.",
        "",
        "| student | kind | cnnlab batch | nbgrader autograde |",
        "|---|---|---:|---:|",
        *per_sample,
        "",
        f"Goal: at least 10x nbgrader's throughput — "
        f"{'met' if rate[2] / nb_rate >= 10 else 'NOT met'} ({rate[2] / nb_rate:.1f}x with "
        f"--jobs 2); 200 submissions in at most 10 minutes on 2 cores — "
        + (
            f"{'met' if at_200 <= 600 else 'NOT met'} "
            f"({at_200:.0f} s{' extrapolated from the fit' if n != 200 else ''})."
        ),
        "",
        "Regenerate: `python -m bench.bench_batch` (quick check: `--quick`).",
    ]
    if args.quick:
        lines.insert(2, "*Quick run (`--quick`): small numbers, rerun without it for the record.*")
        lines.insert(3, "")
    path = write_section("batch", "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
