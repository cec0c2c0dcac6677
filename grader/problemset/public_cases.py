"""Saved check cases: grade without the reference (a student bundle has no ``cnnref``).

A cases folder holds ``manifest.json`` (the seed and, per exercise, everything
:class:`grader.engine.PreparedExercise` holds except arrays) and one ``<exercise>.npz`` per
exercise with, for case ``i``: its encoded inputs under ``c{i}.in.*``
(:func:`grader.sandbox.caseio.encode_case`), its expected outputs under ``c{i}.out.<name>`` and each
visible known mistake's outputs under ``c{i}.mis.<slug>.<name>``. Every file is written
atomically (the ``.npz`` files first, the manifest last, so a folder with a manifest is
complete) and read back strictly (``allow_pickle=False``, numeric and string arrays only).

Public cases are for practice: hidden grading draws fresh cases from a per-student seed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from grader.engine import PreparedCase, PreparedExercise
from grader.errors import ConfigError
from grader.sandbox.caseio import BadArrayFile, decode_case, encode_case, load_npz_strict, save_npz

FORMAT = "cnnlab-public-cases/1"
MANIFEST = "manifest.json"
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


def save_prepared(
    directory: str | os.PathLike[str], prepared: list[PreparedExercise], *, seed: int
) -> Path:
    """Write ``prepared`` (made with ``seed``) to ``directory``; returns the manifest's path."""
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
    manifest = {"format": FORMAT, "seed": int(seed), "exercises": entries}
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
            fields = {f: entry[f] for f in _FIELDS}
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
    return seed, prepared
