"""Grading a class: `cnnlab batch` against `nbgrader autograde`, on the same notebooks.

One nbgrader course is generated from the problem set's nbgrader source notebooks
(``solutions/notebooks``, training exercises left out): ``nbgrader generate_assignment`` makes
the release, and N student submissions are written to ``submitted/<student>/cnn/`` as release
notebooks with the answer cells filled in: correct ones, partly wrong ones (known mistakes from
``tests/fixtures/submissions/mistakes``, unfinished exercises, wrong numeric answers) and
hostile ones (endless loop, ``sys.exit`` at import, memory blow-up, a flood of output,
``os._exit``, fake "PASSED" output).

On a sample of k submissions stratified over those kinds, in one run:

* ``cnnlab batch --jobs 1`` and ``--jobs 2``;
* ``nbgrader autograde`` with ``configure_autograde`` (cnnlab's check cells graded in the
  sandbox, no kernel): the route the docs recommend;
* ``nbgrader autograde`` running the check cells in kernels (``CNNLAB_GRADING_SEED``; each
  kernel starts its own grading service), on a smaller sample;
* ``nbgrader autograde`` of the same notebooks with *plain assert* test cells
  (``bench/plain_asserts.py``: the student's function called in the kernel, no sandbox), what
  instructors compare with.

cnnlab batch and the sandboxed autograde are also run on one submission, so that the fixed
start cost and the cost per further submission are both reported. The check cell's latency in
a real Jupyter kernel (nbclient) is measured too: the first check, a check of unchanged code,
and a check after an edit. ``cnnlab batch --jobs 2`` grades the whole class of N for the
throughput line.

Run ``python -m bench.bench_batch`` (N 12, k 4; a few minutes on 2 cores) or ``--quick``
(N 4, k 2). Writes the ``batch`` section of BENCHMARKS.md.
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
SEED = 2026  # the seed the committed problem set uses (configured where nbgrader grades)
SOURCE_NOTEBOOKS = ROOT / "solutions" / "notebooks"
MISTAKES = ROOT / "tests" / "fixtures" / "submissions" / "mistakes"
HOSTILE_KINDS = ("loop", "exit_at_import", "memory", "print_flood", "os_exit", "fake_pass")
CLI = [sys.executable, "-c", "import sys; from grader.cli import main; sys.exit(main())"]


# -- the course ----------------------------------------------------------------------------


def _run(
    cmd: list[str], *, cwd: Path, timeout: float = 3600, env: dict[str, str] | None = None
) -> tuple[float, str, int]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_")}
    base["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH")) if p)
    base["JUPYTER_CONFIG_DIR"] = str(cwd / ".jupyter")  # no user config leaks in
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        env={**base, **(env or {})},
        timeout=timeout,
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


#: ``nbgrader_config.py`` lines of each nbgrader variant.
VARIANT_CONFIG = {
    "sandbox": "from grader.problemset.nbgrader_autograde import configure_autograde\n"
    f"configure_autograde(c, seed={SEED})\n",
    "kernel": f"import os\nos.environ['CNNLAB_GRADING_SEED'] = '{SEED}'\n",
    # nbgrader's default cell timeout: nothing else stops a hostile cell in an unsandboxed kernel
    "plain": "c.Execute.timeout = 30\n",
}


def _config(course: Path, variant: str) -> str:
    return (
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'cnnlab-bench'\n"
        "c.Execute.timeout = 300\n" + VARIANT_CONFIG[variant]
    )


def plain_cells(doc: dict) -> dict:
    """``doc`` with every cnnlab check cell replaced by a plain assert cell."""
    from bench.plain_asserts import CELL
    from grader.problemset.nbgrader_bridge import checked_exercise

    doc = copy.deepcopy(doc)
    for cell in doc["cells"]:
        name = checked_exercise(cell)
        if name is not None:
            cell["source"] = CELL.format(name=name)
    return doc


def make_course(course: Path, *, variant: str = "sandbox") -> dict[str, dict]:
    """An nbgrader course with the assignment released; returns the release notebooks."""
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    training = training_exercises()
    for nb_path in sorted(SOURCE_NOTEBOOKS.glob("*.ipynb")):
        doc = json.loads(nb_path.read_text())
        doc["cells"] = [c for c in doc["cells"] if _cell_exercise(c) not in training]
        if variant == "plain":
            doc = plain_cells(doc)
        (course / "source" / ASSIGNMENT / nb_path.name).write_text(json.dumps(doc, indent=1))
    (course / "nbgrader_config.py").write_text(_config(course, variant))
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
    """A course folder whose submitted/ holds only ``students`` (same config and gradebook)."""
    shutil.copytree(course, dest, ignore=shutil.ignore_patterns("submitted", "autograded"))
    for s in students:
        shutil.copytree(course / "submitted" / s, dest / "submitted" / s)
    (dest / "nbgrader_config.py").write_text(
        (course / "nbgrader_config.py").read_text().replace(str(course), str(dest))
    )
    return dest


def variant_course(course: Path, dest: Path, students: list[str], variant: str) -> Path:
    """The same submissions in a course of another nbgrader variant (its own release and
    gradebook; ``plain``: the check cells of source and submissions become assert cells)."""
    make_course(dest, variant=variant)
    for s in students:
        for nb_path in sorted((course / "submitted" / s / ASSIGNMENT).iterdir()):
            target = dest / "submitted" / s / ASSIGNMENT / nb_path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if variant == "plain" and nb_path.suffix == ".ipynb":
                target.write_text(json.dumps(plain_cells(json.loads(nb_path.read_text()))))
            else:
                shutil.copy(nb_path, target)
    return dest


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


def run_nbgrader(course: Path, env: dict[str, str] | None = None) -> tuple[float, dict, str]:
    """``nbgrader autograde``: wall time, per-student scores, the log."""
    wall, log, code = _run(
        ["nbgrader", "autograde", ASSIGNMENT, "--create", "--force"],
        cwd=course,
        timeout=7200,
        env=env,
    )
    if code != 0:
        print(f"nbgrader autograde exited {code}:\n{log[-2000:]}", file=sys.stderr)
    from nbgrader.api import Gradebook as NbGradebook

    scores = {}
    with NbGradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            scores[sub.student_id] = float(sub.score)
    return wall, scores, log


def check_latency(release: dict[str, dict], tmp: Path, *, edits: int = 3) -> dict[str, float]:
    """A check cell in a real kernel (nbclient), on the solved pooling notebook: the first
    check of the session, a check of unchanged code, and the mean of ``edits`` checks each
    after an edit is saved."""
    import nbformat
    from nbclient import NotebookClient

    from grader.problemset.nbgrader_bridge import SEED_ENV, notebook_checks

    solutions = _solution_sources()
    doc = copy.deepcopy(release["pooling.ipynb"])
    for cell in doc["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            cell["source"] = solutions[meta["grade_id"]]
    folder = tmp / "latency"
    folder.mkdir()
    path = folder / "pooling.ipynb"
    path.write_text(json.dumps(doc))
    checks = {name: index for index, name in notebook_checks(doc)}
    old = os.environ.get(SEED_ENV)
    os.environ[SEED_ENV] = str(SEED)
    try:
        nb = nbformat.read(str(path), as_version=4)
        client = NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(folder)}})

        def run(index: int) -> float:
            start = time.perf_counter()
            client.execute_cell(nb.cells[index], index)
            return time.perf_counter() - start

        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code" and index not in checks.values():
                    run(index)
            first = run(checks["maxpool2d_forward"])
            unchanged = run(checks["maxpool2d_backward"])
            after_edit = []
            answer = checks["maxpool2d_backward"] - 1
            for i in range(edits):
                doc["cells"][answer]["source"] += f"\n# edit {i}\n"
                path.write_text(json.dumps(doc))
                after_edit.append(run(checks["maxpool2d_backward"]))
    finally:
        if old is None:
            os.environ.pop(SEED_ENV, None)
        else:
            os.environ[SEED_ENV] = old
    return {"first": first, "unchanged": unchanged, "edited": sum(after_edit) / len(after_edit)}


# -- the benchmark -------------------------------------------------------------------------


def _score(x: float | None) -> str:
    return "—" if x is None else f"{x:g}"


def _stratified(students: list[str], kinds: list[str], k: int) -> list[str]:
    by_group: dict[str, list[str]] = {}
    for student, kind in zip(students, kinds, strict=True):
        by_group.setdefault(kind.split(":")[0], []).append(student)
    sample: list[str] = []
    # the plain-assert baseline runs student code unsandboxed: of the hostile kinds, take one
    # that cannot take the machine down (no memory blow-up, no endless loop)
    safe = ("hostile:fake_pass", "hostile:print_flood", "hostile:exit_at_import")
    rank = {
        s: (safe.index(kind) if kind in safe else len(safe))
        for s, kind in zip(students, kinds, strict=True)
    }
    by_group["hostile"] = sorted(by_group.get("hostile", []), key=lambda s: (rank[s], s))
    while len(sample) < min(k, len(students)):
        for group in ("correct", "partly_wrong", "hostile"):
            pool = [s for s in by_group.get(group, []) if s not in sample]
            if pool and len(sample) < k:
                sample.append(pool[0])
    return sorted(sample)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_batch", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N 4, k 2, kernel sample 1")
    parser.add_argument("--n", type=int, help="class size for cnnlab batch (default 12)")
    parser.add_argument("--sample", type=int, help="submissions every grader grades (default 4)")
    parser.add_argument("--kernel-sample", type=int, help="kernel-side checks sample (default 1)")
    parser.add_argument("--keep", type=Path, help="keep the generated course in this folder")
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of batch and sandboxed autograde (default 2)"
    )
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)
    n = args.n or (4 if args.quick else 12)
    k = min(args.sample or (2 if args.quick else 4), n)
    kk = min(args.kernel_sample or 1, k)

    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-bench-batch-"))
    try:
        course = tmp / "course"
        print(f"generating an nbgrader course with {n} submissions in {course}", flush=True)
        exercises = graded_exercises()
        release = make_course(course)
        kinds = make_class(course, release, n)
        students = sorted(p.name for p in (course / "submitted").iterdir())
        kind_of = dict(zip(students, kinds, strict=True))
        sample = _stratified(students, kinds, k)
        one = sample[:1]
        kernel_sample = [s for s in sample if kind_of[s] == "correct"][:kk] or sample[:kk]
        mix = {
            "correct": kinds.count("correct"),
            "partly wrong": kinds.count("partly_wrong"),
            "hostile": sum(x.startswith("hostile") for x in kinds),
        }
        walls: dict[str, float] = {}
        scores: dict[str, dict] = {}
        runs: dict[str, list[float]] = {}
        loads: list[float] = []

        def timed(label: str, fn, *a, **kw):
            result = fn(*a, **kw)
            walls[label] = result[0]
            scores[label] = result[1]
            print(f"{label}: {result[0]:.1f} s", flush=True)
            return result

        sub_k = subset_course(course, tmp / "k", sample)
        sub_1 = subset_course(course, tmp / "one", one)
        nb_one = subset_course(course, tmp / "nb-one", one)
        loads.append(os.getloadavg()[0])
        # the two graders the goal compares, alternated and repeated (the fastest run of each
        # counts): a burst of load on a shared machine then cannot favour one of them
        sandbox_log = ""
        for rep in range(repeat):
            for label, fn, args_ in (
                ("batch1", run_cnnlab, (sub_k, tmp / f"o1-{rep}")),
                ("batch1@1", run_cnnlab, (sub_1, tmp / f"o3-{rep}")),
                ("sandbox", run_nbgrader, (sub_k,)),
                ("sandbox@1", run_nbgrader, (nb_one,)),
            ):
                kw = {"jobs": 1, "exercises": exercises} if fn is run_cnnlab else {}
                result = fn(*args_, **kw)
                runs.setdefault(label, []).append(result[0])
                if label not in walls or result[0] < walls[label]:
                    walls[label], scores[label] = result[0], result[1]
                if label == "sandbox":
                    sandbox_log = result[2]
                print(f"{label} (run {rep + 1}): {result[0]:.1f} s", flush=True)
        timed("batch2", run_cnnlab, sub_k, tmp / "o2", jobs=2, exercises=exercises)
        plain = variant_course(course, tmp / "plain", sample, "plain")
        cases = tmp / "plain-cases"
        from grader import engine, registry
        from grader.problemset.public_cases import save_prepared

        prepared = engine.prepare_all(registry.select(exercises), SEED)
        save_prepared(cases, prepared, seed=SEED)  # type: ignore[arg-type]
        timed("plain", run_nbgrader, plain, {"CNNLAB_PLAIN_CASES": str(cases)})
        kernel = variant_course(course, tmp / "kernel", kernel_sample, "kernel")
        timed("kernel", run_nbgrader, kernel)
        timed("class", run_cnnlab, course, tmp / "oc", jobs=2, exercises=exercises)
        latency = check_latency(release, tmp)
        print(f"check latency: {latency}", flush=True)
        warnings = sandbox_log.count("has changed")
        loads.append(os.getloadavg()[0])
        if args.keep:
            shutil.copytree(course, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    per = {
        "batch1": walls["batch1"] / k,
        "batch2": walls["batch2"] / k,
        "sandbox": walls["sandbox"] / k,
        "plain": walls["plain"] / k,
        "kernel": walls["kernel"] / len(kernel_sample),
    }
    marginal_batch = (walls["batch1"] - walls["batch1@1"]) / max(k - 1, 1)
    marginal_sandbox = (walls["sandbox"] - walls["sandbox@1"]) / max(k - 1, 1)
    base = per["batch1"]
    ref = scores["batch1"]
    agree = {
        label: sum(
            1
            for s in scores[label]
            if ref.get(s) is not None and abs(scores[label][s] - ref[s]) < 1e-6
        )
        for label in ("sandbox", "kernel")
    }
    sample_kinds = [kind_of[s] for s in sample]
    rows = [
        ("cnnlab batch --jobs 1", k, walls["batch1"], per["batch1"]),
        ("cnnlab batch --jobs 2", k, walls["batch2"], per["batch2"]),
        (
            "nbgrader autograde, `configure_autograde` (checks graded in the sandbox, no kernel)",
            k,
            walls["sandbox"],
            per["sandbox"],
        ),
        (
            "nbgrader autograde, plain `assert` test cells in the kernel (no sandbox)",
            k,
            walls["plain"],
            per["plain"],
        ),
        (
            "nbgrader autograde, check cells run in kernels (a grading service per kernel)",
            len(kernel_sample),
            walls["kernel"],
            per["kernel"],
        ),
    ]
    ratio = per["sandbox"] / base
    further = marginal_sandbox / max(marginal_batch, 1e-9)
    lines = [
        "## Grading a class: `cnnlab batch` vs `nbgrader autograde`",
        "",
        f"Machine: {machine()}.",
        "",
        f"An nbgrader course of the problem set's {len(release)} notebooks "
        f"({len(exercises)} non-training exercises) and {n} submissions: {mix['correct']} "
        f"correct, {mix['partly wrong']} partly wrong (known mistakes, unfinished exercises, "
        f"wrong numeric answers), {mix['hostile']} hostile (endless loop, `sys.exit` at "
        "import, memory blow-up, output flood, `os._exit`, fake PASSED). Every grader below "
        f"grades the same sample of {k} ({', '.join(sample_kinds)}; the kernel-side row "
        f"{len(kernel_sample)}: {', '.join(kind_of[s] for s in kernel_sample)}), with the "
        "same seed, in one run. Wall times include each tool's start (imports, workers, "
        "sandbox); the plain-assert notebooks replace each check cell with a cell that calls "
        "the student's function in the kernel on the same check cases and asserts "
        "(`bench/plain_asserts.py`).",
        "",
        "| grader | submissions | wall time | s / submission | vs cnnlab batch --jobs 1 |",
        "|---|---:|---:|---:|---:|",
        *[f"| {g} | {m} | {w:.1f} s | {s:.1f} | {s / base:.2f}x |" for g, m, w, s in rows],
        "",
        f"Cost of each further submission (the same graders on 1 submission, the first of the "
        f"sample): cnnlab batch --jobs 1 {marginal_batch:.2f} s, nbgrader autograde with "
        f"`configure_autograde` {marginal_sandbox:.2f} s "
        f"({marginal_sandbox / max(marginal_batch, 1e-9):.2f}x). These two graders ran "
        f"{repeat} times each, alternated; the fastest run of each counts ("
        + "; ".join(
            f"{label} " + ", ".join(f"{w:.1f}" for w in runs[label]) + " s"
            for label in ("batch1", "batch1@1", "sandbox", "sandbox@1")
        )
        + f"). Load average (1 min) {loads[0]:.2f} before them, {loads[-1]:.2f} at the end.",
        "",
        f"Goal: nbgrader autograde within 2x of cnnlab batch per submission — with "
        f"`configure_autograde`, {'met' if ratio <= 2 else 'NOT met'} on this sample's wall "
        f"time ({ratio:.2f}x, each tool's start included), "
        f"{'met' if further <= 2 else 'NOT met'} for each further submission "
        f"({further:.2f}x; on top of cnnlab's grading, which is the same sandbox runs as "
        "batch, autograde does nbgrader's own work per notebook: two conversions, sanitising, "
        "gradebook rows and notebook files, which `cnnlab batch --nbgrader-gradebook` skips); "
        f"{per['kernel'] / base:.1f}x with the check cells in kernels; plain asserts "
        f"{per['plain'] / base:.2f}x. Scores: the sandboxed autograde agrees with cnnlab "
        f"batch on {agree['sandbox']} of {k} submissions and the kernel-side checks on "
        f"{agree['kernel']} of {len(kernel_sample)} (partial credit included); "
        f"{warnings} `checksum ... has changed` warnings.",
        "",
        "| student | kind | cnnlab batch | autograde, sandbox | autograde, plain asserts |",
        "|---|---|---:|---:|---:|",
        *[
            f"| {s} | {kind_of[s]} | {_score(ref.get(s))} | "
            f"{_score(scores['sandbox'].get(s))} | {_score(scores['plain'].get(s))} |"
            for s in sample
        ],
        "",
        "Plain asserts give all or nothing per test cell (and different tests), so their scores "
        "can differ by design; they run the student's code unprotected in the kernel (a hostile "
        "submission can hang it until nbgrader's cell timeout, or fake its own checks).",
        "",
        f"A check cell in Jupyter (a real kernel via nbclient, solved pooling notebook): the "
        f"first check of the session {latency['first']:.2f} s (starts the grading service and "
        f"grades the whole notebook), a check of unchanged code {latency['unchanged']:.3f} s, "
        f"a check after an edit is saved {latency['edited']:.2f} s (mean of 3). Goal: within "
        f"1 s after the first check — "
        f"{'met' if max(latency['unchanged'], latency['edited']) <= 1 else 'NOT met'}.",
        "",
        f"The whole class, `cnnlab batch --jobs 2`: {n} submissions in {walls['class']:.1f} s "
        f"({60 * n / walls['class']:.1f} per minute).",
        "",
        "Regenerate: `python -m bench.bench_batch` (quick check: `--quick`; `--n`, `--sample`, "
        "`--kernel-sample` change the sizes).",
    ]
    if args.quick:
        lines.insert(2, "*Quick run (`--quick`): small numbers, rerun without it for the record.*")
        lines.insert(3, "")
    path = write_section("batch", "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
