"""Saved check cases: grade without the reference (a student bundle has no ``cnnref``).

A cases folder holds ``manifest.json`` (the seed and, per exercise, everything
:class:`grader.engine.PreparedExercise` holds except arrays) and one ``<exercise>.npz`` per
exercise with, for case ``i``: its encoded inputs under ``c{i}.in.*``
(:func:`grader.sandbox.caseio.encode_case`), its expected outputs under ``c{i}.out.<name>`` and each
visible known mistake's outputs under ``c{i}.mis.<slug>.<name>``. Every file is written
atomically (the ``.npz`` files first, the manifest last, so a folder with a manifest is
complete) and read back strictly (``allow_pickle=False``, numeric and string arrays only).

Public cases are for practice: hidden grading draws fresh cases from a per-student seed.

The numeric questions have no public cases (they would give the answers away); their answers
are saved as salted slow hashes instead (``answers.json``, :func:`save_answer_checks`), which
check an answer without revealing it (:mod:`grader.answers`, docs/students.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from grader import answers
from grader.engine import PreparedCase, PreparedExercise
from grader.errors import ConfigError
from grader.sandbox.caseio import BadArrayFile, decode_case, encode_case, load_npz_strict, save_npz

FORMAT = "cnnlab-public-cases/1"
MANIFEST = "manifest.json"
ANSWERS = "answers.json"
ANSWERS_FORMAT = "cnnlab-answer-checks/1"
_FIELDS = (
    "name",
    "number",
    "title",
    "topic",
    "points",
    "function",
    "harness",
    "module_hint",
    "rtol",
    "atol",
    "timeout_s",
    "mistake_messages",
    "postprocess",
    "explain",
)


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def not_checked_message(name: str, entry: dict[str, Any] | None = None) -> str:
    """What a student is told about an exercise the public cases do not check."""
    what = (entry or {}).get("kind", "numeric question")
    return (
        f"{name} is a {what}: it has no public check here, because a public check would give "
        "the answer away; your instructor checks it when grading"
    )


def load_not_checked(directory: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """name -> ``{"name", "title", "points", "kind"}`` of the exercises the bundle holds but
    its public cases do not check (the numeric questions); empty for an older manifest."""
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = manifest.get("not_checked", [])
    return {str(e["name"]): e for e in entries if isinstance(e, dict) and "name" in e}


def save_prepared(
    directory: str | os.PathLike[str],
    prepared: list[PreparedExercise],
    *,
    seed: int,
    not_checked: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``prepared`` (made with ``seed``) to ``directory``; returns the manifest's path.

    ``not_checked`` lists the exercises of the problem set that have no public cases (each
    ``{"name", "title", "points", "kind"}``), so that the bundle can say how they are checked.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    for exercise in prepared:
        arrays = {}
        cases = []
        for i, case in enumerate(exercise.cases):
            for key, arr in encode_case(case.inputs).items():
                arrays[f"c{i}.in.{key}"] = arr
            for name, arr in case.expected.items():
                arrays[f"c{i}.out.{name}"] = arr
            for slug, outputs in case.mistakes.items():
                for name, arr in outputs.items():
                    arrays[f"c{i}.mis.{slug}.{name}"] = arr
            for key, arr in encode_case(case.hidden).items():
                arrays[f"c{i}.hid.{key}"] = arr
            cases.append(
                {
                    "label": case.label,
                    "expected": list(case.expected),
                    "mistakes": {slug: list(out) for slug, out in case.mistakes.items()},
                }
            )
        filename = f"{exercise.name}.npz"
        save_npz(directory / filename, arrays)
        entry = {f: getattr(exercise, f) for f in _FIELDS}
        entries.append({**entry, "file": filename, "cases": cases})
    manifest = {
        "format": FORMAT,
        "seed": int(seed),
        "exercises": entries,
        "not_checked": list(not_checked or []),
    }
    path = directory / MANIFEST
    _write_text_atomic(path, json.dumps(manifest, indent=1) + "\n")
    return path


def load_prepared(directory: str | os.PathLike[str]) -> tuple[int, list[PreparedExercise]]:
    """The seed and exercises saved by :func:`save_prepared`.

    Raises:
        ConfigError: the folder or its manifest is missing, or a file is damaged; the message
            says how to get a good copy.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    fix = "regenerate the bundle (`cnnlab release`) or download it again"
    if not path.is_file():
        raise ConfigError(f"no check cases in {str(directory)!r} (no {MANIFEST}); {fix}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"unknown format {manifest.get('format')!r}")
        seed = int(manifest["seed"])
        prepared = []
        for entry in manifest["exercises"]:
            arrays = load_npz_strict(directory / entry["file"], kinds="biufU")
            cases = []
            for i, meta in enumerate(entry["cases"]):
                prefix = f"c{i}.in."
                encoded = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                hid = f"c{i}.hid."
                hidden = {k[len(hid) :]: v for k, v in arrays.items() if k.startswith(hid)}
                cases.append(
                    PreparedCase(
                        inputs=decode_case(encoded),
                        expected={n: arrays[f"c{i}.out.{n}"] for n in meta["expected"]},
                        mistakes={
                            slug: {n: arrays[f"c{i}.mis.{slug}.{n}"] for n in names}
                            for slug, names in meta["mistakes"].items()
                        },
                        label=meta.get("label", ""),
                        hidden=decode_case(hidden) if hidden else {},
                    )
                )
            fields = {f: entry.get(f) for f in _FIELDS}
            prepared.append(PreparedExercise(**fields, cases=tuple(cases)))
    except BadArrayFile as exc:
        raise ConfigError(
            f"the check cases in {str(directory)!r} are damaged: {exc}; {fix}"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the check cases in {str(directory)!r} are unreadable ({type(exc).__name__}: {exc}); "
            f"{fix}"
        ) from exc
    if (directory / ANSWERS).is_file():
        prepared += load_answer_checks(directory)
    return seed, prepared


# ----------------------------------------------------------------------------- hashed answers


def _salt() -> bytes:
    """A fresh random salt per question and bundle (not secret; it makes every digest unique,
    so that one table of precomputed digests serves no two questions). Random rather than
    derived from the problem seed, so that the salts give away nothing about that seed."""
    return secrets.token_bytes(16)


def save_answer_checks(
    directory: str | os.PathLike[str],
    questions: list[PreparedExercise],
    *,
    cost: dict[str, int] | None = None,
) -> Path:
    """Write ``answers.json``: for each numeric question (prepared with the problem seed), the
    scrypt digest of its answer and of each known mistake's answer, never the numbers.

    Args:
        directory: the bundle's cases folder.
        questions: the prepared questions (one case each, output ``answer``).
        cost: scrypt's ``n``, ``r``, ``p`` (default :data:`grader.answers.DEFAULT_COST`).

    Returns:
        The path written (atomically).
    """
    cost = dict(cost or answers.DEFAULT_COST)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for q in questions:
        (case,) = q.cases
        answer = case.expected["answer"]
        integer = answer.dtype.kind in "iu"
        value = int(answer) if integer else float(answer)
        quantum = None if integer else answers.float_quantum(value)
        salt = _salt()
        mistakes = []
        for slug, outputs in case.mistakes.items():
            wrong = outputs["answer"]
            text = answers.reference_text(int(wrong) if integer else float(wrong), quantum)
            mistakes.append([slug, answers.digest(text, salt, cost)])
        entry = {f: getattr(q, f) for f in _FIELDS if f != "postprocess"}
        entry.update(
            integer=integer,
            quantum=quantum,
            salt=salt.hex(),
            digest=answers.digest(answers.reference_text(value, quantum), salt, cost),
            mistakes=mistakes,
        )
        entries.append(entry)
    document = {
        "format": ANSWERS_FORMAT,
        "kdf": answers.KDF,
        "cost": cost,
        "questions": entries,
    }
    path = directory / ANSWERS
    _write_text_atomic(path, json.dumps(document, indent=1) + "\n")
    return path


def load_answer_checks(directory: str | os.PathLike[str]) -> list[PreparedExercise]:
    """The questions of ``answers.json`` as exercises graded by their digests (scorer
    ``answer_check``): the child runs the student's function, the parent hashes its number.

    Raises:
        ConfigError: the file is damaged or of another format.
    """
    path = Path(directory) / ANSWERS
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != ANSWERS_FORMAT or document.get("kdf") != answers.KDF:
            raise ValueError(f"unknown format {document.get('format')!r}")
        cost = {k: int(document["cost"][k]) for k in ("n", "r", "p")}
        out = []
        for entry in document["questions"]:
            mistakes = [(str(slug), str(d)) for slug, d in entry["mistakes"]]
            hidden = {
                "integer": bool(entry["integer"]),
                "quantum": -1.0 if entry["quantum"] is None else float(entry["quantum"]),
                "salt": str(entry["salt"]),
                "digest": str(entry["digest"]),
                "mistakes": mistakes,
                "cost": cost,
            }
            case = PreparedCase(
                inputs={},
                expected={"answer": np.asarray(0, dtype=np.int64)},
                mistakes={
                    slug: {"answer": np.asarray(k, dtype=np.int64)}
                    for k, (slug, _) in enumerate(mistakes, 1)
                },
                hidden=hidden,
            )
            fields = {f: entry[f] for f in _FIELDS if f != "postprocess"}
            out.append(PreparedExercise(**fields, cases=(case,), postprocess="answer_check"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the answer checks in {str(path)!r} are unreadable ({type(exc).__name__}: {exc}); "
            "regenerate the bundle (`cnnlab release`) or download it again"
        ) from exc
    return out
