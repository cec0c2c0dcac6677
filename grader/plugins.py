"""Instructors' own exercises: plugins found through the entry-point group ``cnnlab.exercises``.

A plugin is an ordinary Python distribution (a package of the instructor's, installed with
pip) that declares, in its ``pyproject.toml``::

    [project.entry-points."cnnlab.exercises"]
    avgpool2d_backward = "avgpool_plugin.spec:AVGPOOL2D_BACKWARD"

The object an entry point names is an :class:`grader.registry.ExerciseSpec`, a list or tuple of
them, or a callable taking no arguments that returns either. :mod:`grader.registry` loads every
entry point of the group after the built-in exercises, checks each spec
(:func:`grader.authoring.check_spec`) and registers the ones that pass; a plugin that fails to
import, names an exercise that exists already or fails its own check is recorded as a
:class:`PluginProblem` (``cnnlab list`` shows it) and never takes the built-in exercises down.

This module only *reads metadata* (no plugin code runs until :func:`load` is called), so the
sandbox's parent side can ask for :func:`plugin_package_paths`, the folders a child must never
read (a plugin's reference is as secret as ``cnnref``), without importing any plugin.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The entry-point group instructors register their exercises under.
ENTRY_POINT_GROUP = "cnnlab.exercises"
#: Set to ``1`` to ignore every plugin (e.g. to tell whether a fault comes from a plugin).
NO_PLUGINS_ENV = "CNNLAB_NO_PLUGINS"


@dataclass(frozen=True)
class PluginSource:
    """Where one entry point of the ``cnnlab.exercises`` group comes from (metadata only).

    Attributes:
        entry_point: the entry point's name, e.g. ``"avgpool2d_backward"``.
        value: what it points at, ``"module:attribute"``.
        distribution: the installed distribution that declares it (``None`` when unknown).
        version: that distribution's version.
        packages: the top-level import packages of the distribution (its ``top_level.txt``,
            else its installed files), always including the entry point's own package.
    """

    entry_point: str
    value: str
    distribution: str | None
    version: str | None
    packages: tuple[str, ...]

    def describe(self) -> str:
        """``plugin 'avgpool2d_backward' (distribution cnnlab-avgpool 0.1.0)``."""
        dist = (
            f"distribution {self.distribution} {self.version or ''}".rstrip()
            if self.distribution
            else "unknown distribution"
        )
        return f"plugin {self.entry_point!r} ({dist}, {self.value})"


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be used, and why (shown by ``cnnlab list``).

    Attributes:
        source: the entry point at fault.
        message: what is wrong and what to do about it.
        exercise: the exercise concerned, when the problem is one spec's.
    """

    source: PluginSource
    message: str
    exercise: str | None = None

    def __str__(self) -> str:
        what = f"exercise {self.exercise!r}: " if self.exercise else ""
        return f"{self.source.describe()}: {what}{self.message}"


class PluginLoadError(Exception):
    """A plugin's entry point could not be loaded or named no exercise spec."""


def _module_of(value: str) -> str:
    return value.partition(":")[0].strip()


def _dist_packages(dist: metadata.Distribution | None) -> list[str]:
    if dist is None:
        return []
    text = None
    try:
        text = dist.read_text("top_level.txt")
    except Exception:
        text = None
    if text:
        return [line.strip() for line in text.splitlines() if line.strip()]
    found: list[str] = []
    for entry in dist.files or ():
        parts = Path(str(entry)).parts
        if (
            not parts
            or parts[0].endswith((".dist-info", ".egg-info", ".data"))
            or parts[0]
            in (
                "..",
                "__pycache__",
            )
        ):
            continue
        name = parts[0]
        if len(parts) == 1:
            if not name.endswith(".py"):
                continue
            name = name[: -len(".py")]
        if name.isidentifier() and name not in found:
            found.append(name)
    return found


def _source(ep: metadata.EntryPoint) -> PluginSource:
    dist = getattr(ep, "dist", None)
    packages = _dist_packages(dist)
    own = _module_of(ep.value).split(".")[0]
    if own and own not in packages:
        packages.append(own)
    return PluginSource(
        entry_point=ep.name,
        value=ep.value,
        distribution=dist.metadata["Name"] if dist is not None else None,
        version=dist.version if dist is not None else None,
        packages=tuple(packages),
    )


_DISCOVERED: list[tuple[PluginSource, metadata.EntryPoint]] | None = None


def refresh() -> None:
    """Forget what :func:`discover` found (after a distribution was installed in-process)."""
    global _DISCOVERED
    _DISCOVERED = None


def discover() -> list[tuple[PluginSource, metadata.EntryPoint]]:
    """Every entry point of :data:`ENTRY_POINT_GROUP`, in a stable order (distribution, name).

    Reads installed metadata only (once per process; :func:`refresh` reads it again);
    returns nothing when ``$CNNLAB_NO_PLUGINS`` is set.
    """
    global _DISCOVERED
    if os.environ.get(NO_PLUGINS_ENV, "").strip() not in ("", "0"):
        return []
    if _DISCOVERED is None:
        _DISCOVERED = _discover()
    return list(_DISCOVERED)


def _discover() -> list[tuple[PluginSource, metadata.EntryPoint]]:
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # broken metadata somewhere on sys.path: no plugins, not a crash
        return []
    seen: set[tuple[str | None, str, str]] = set()
    found = []
    for ep in eps:
        source = _source(ep)
        key = (_normalise(source.distribution), ep.name, ep.value)
        if key in seen:  # the same distribution on sys.path twice
            continue
        seen.add(key)
        found.append((source, ep))
    found.sort(key=lambda item: (_normalise(item[0].distribution) or "", item[0].entry_point))
    return found


def _normalise(name: str | None) -> str | None:
    return None if name is None else re.sub(r"[-_.]+", "-", name).lower()


def plugin_sources() -> list[PluginSource]:
    """The :class:`PluginSource` of every installed entry point (no plugin code runs)."""
    return [source for source, _ in discover()]


def plugin_packages() -> list[str]:
    """Top-level import packages of every distribution with a ``cnnlab.exercises`` entry point.

    These hold instructors' reference code: a sandboxed child may not import or read them.
    """
    names: list[str] = []
    for source in plugin_sources():
        names += [p for p in source.packages if p not in names]
    return names


def plugin_package_paths() -> list[Path]:
    """Folders (or single-module files) of :func:`plugin_packages`, resolved, without
    importing them; packages that cannot be found are left out."""
    paths: list[Path] = []
    for name in plugin_packages():
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        found: Iterable[str] = spec.submodule_search_locations or (
            [spec.origin] if spec.origin and spec.origin not in ("built-in", "frozen") else []
        )
        for p in found:
            resolved = Path(p).resolve()
            if resolved not in paths:
                paths.append(resolved)
    return paths


def load(ep: metadata.EntryPoint) -> list[Any]:
    """Import an entry point and return what it names as a list (not yet checked).

    Raises:
        PluginLoadError: the import failed, or the object is not a spec, a list of specs or
            a callable returning one of those.
    """
    try:
        obj = ep.load()
    except BaseException as exc:  # a plugin's import may do anything, even sys.exit
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginLoadError(
            f"importing {ep.value} failed: {type(exc).__name__}: {exc}. Fix the plugin (run "
            f"`python -c 'import {_module_of(ep.value)}'` to see the traceback) or uninstall it"
        ) from exc
    if _is_spec(obj):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, Callable):  # type: ignore[arg-type]
        try:
            made = obj()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise PluginLoadError(
                f"calling {ep.value}() failed: {type(exc).__name__}: {exc}"
            ) from exc
        if _is_spec(made):
            return [made]
        if isinstance(made, (list, tuple)):
            return list(made)
        obj = made
    raise PluginLoadError(
        f"{ep.value} is a {type(obj).__name__}; an entry point of {ENTRY_POINT_GROUP!r} must "
        "name an ExerciseSpec, a list of them, or a function returning either"
    )


def _is_spec(obj: Any) -> bool:
    from grader.registry import ExerciseSpec

    return isinstance(obj, ExerciseSpec)


# --------------------------------------------------------------------------- wheels to ship


def _wheel_distribution(path: Path) -> str | None:
    """The normalised distribution name of a wheel file (``name-version-...whl``)."""
    if not path.name.endswith(".whl") or path.name.count("-") < 4:
        return None
    return _normalise(path.name.split("-", 1)[0])


def _wheel_has_entry_point(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as whl:
            for name in whl.namelist():
                if name.endswith(".dist-info/entry_points.txt"):
                    text = whl.read(name).decode("utf-8", "replace")
                    return f"[{ENTRY_POINT_GROUP}]" in text
    except (OSError, zipfile.BadZipFile):
        return False
    return False


def source_folder(distribution: str) -> Path | None:
    """The local folder ``distribution`` was installed from (``pip install [-e] ./folder``,
    PEP 610's ``direct_url.json``), if it still exists."""
    import json
    from urllib.parse import unquote, urlparse

    try:
        text = metadata.distribution(distribution).read_text("direct_url.json")
        url = json.loads(text or "{}").get("url", "")
    except Exception:
        return None
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None
    folder = Path(unquote(parsed.path))
    return (
        folder if (folder / "pyproject.toml").is_file() or (folder / "setup.py").is_file() else None
    )


def _build_wheel(folder: Path, dest: Path, distribution: str) -> Path:
    import shutil
    import tempfile

    from grader.errors import ConfigError
    from grader.wheels import pip_wheel

    with tempfile.TemporaryDirectory(prefix="cnnlab-plugin-") as tmp:
        copy = Path(tmp) / "src"
        ignore = shutil.ignore_patterns(
            ".git", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".venv", ".tox"
        )
        shutil.copytree(folder, copy, ignore=ignore)
        out = Path(tmp) / "wheels"
        wheels, tail = pip_wheel(copy, out)
        if not wheels:
            raise ConfigError(
                f"could not build a wheel of the plugin {distribution} from {folder}:\n{tail}\n"
                f"build one yourself (`pip wheel --no-deps {folder} -w dist/`) and pass "
                "--plugin-wheel FILE"
            )
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / wheels[-1].name
        shutil.copy2(wheels[-1], target)
    return target


def plugin_wheels(
    exercises: Iterable[str], dest: Path, given: Iterable[str | os.PathLike[str]] = ()
) -> list[Path]:
    """Wheels of the plugin distributions that provide ``exercises`` (for an autograder that
    must install them): the matching wheel of ``given``, else one built from the folder the
    plugin was installed from.

    Raises:
        ConfigError: a given file is not a wheel of a plugin, or a plugin has neither a given
            wheel nor a local source folder (the message says how to get its wheel).
    """
    from grader import registry
    from grader.errors import ConfigError

    exercises = list(exercises)
    by_dist: dict[str, Path] = {}
    for item in given:
        path = Path(item)
        dist = _wheel_distribution(path)
        if not path.is_file() or dist is None:
            raise ConfigError(
                f"--plugin-wheel {str(path)!r} is not a wheel file (name-version-...whl); "
                "build one with `pip wheel --no-deps PLUGIN_FOLDER -w dist/`"
            )
        if not _wheel_has_entry_point(path):
            raise ConfigError(
                f"--plugin-wheel {path.name} declares no {ENTRY_POINT_GROUP!r} entry point, so "
                "it would register no exercise"
            )
        by_dist[dist] = path
    needed: dict[str, PluginSource] = {}
    for name in exercises:
        source = registry.origin(name)
        if source is not None and source.distribution:
            needed.setdefault(_normalise(source.distribution) or "", source)
    out: list[Path] = []
    for key, source in needed.items():
        if key in by_dist:
            out.append(by_dist[key])
            continue
        assert source.distribution is not None
        folder = source_folder(source.distribution)
        if folder is None:
            raise ConfigError(
                f"the autograder needs the plugin {source.distribution} {source.version or ''} "
                f"(it provides {', '.join(n for n in exercises if registry.origin(n) == source)}), "
                "but it was not installed from a local folder, so no wheel can be built: pass "
                f"--plugin-wheel FILE (e.g. from `pip download --no-deps "
                f"{source.distribution}=={source.version}`)"
            )
        out.append(_build_wheel(folder, dest, source.distribution))
    return out
