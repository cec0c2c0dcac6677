"""Generation of the problem set: student stubs, solutions and notebooks, from the registry.

The reference implementation (``cnnref``) is the single source. For every exercise this module
reads the reference function's source with :mod:`ast` and produces

* a **stub**: the signature and Google docstring verbatim, then
  ``raise NotImplementedError("Exercise N: name")``, plus the helper *types* the student needs
  (NamedTuple caches, layer descriptions) and the imports the signature uses;
* a **solution**: the reference source verbatim plus every helper it uses, transitively, from
  its own module and from other ``cnnref`` modules (``from cnnref.x import y`` is inlined and
  ``x.y`` rewritten to ``y``), so a solution module runs without ``cnnref``. An instructor's
  plugin exercise is generated the same way from its own reference module: helpers from the
  plugin's packages are inlined like ``cnnref``'s (:func:`reference_packages`).

Rendering goes through the jinja2 templates in ``templates/`` (installed as
``grader.templates``); :func:`render_problem_set` returns every file as text, keyed by its
path relative to the output folder, and :func:`write_problem_set` writes them atomically. The
same seed gives byte-identical files: nothing here reads the clock, the environment or a set's
iteration order.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import importlib
import inspect
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import numpy as np

from grader.errors import ConfigError, GraderFailure
from grader.exercises import TOPICS
from grader.registry import ExerciseSpec

#: The package whose code is inlined into solutions (never imported by generated files).
REFERENCE_PACKAGE = "cnnref"
#: Name of the manifest of generated files in each output folder (sha256 per file).
MANIFEST_NAME = ".cnnlab-generated"
#: Topic of the numeric questions (rendered from the question text, not from source).
QUESTIONS_TOPIC = "questions"
#: Topic order in notebooks and READMEs: the lecture order the registry uses (unknown topics
#: follow, alphabetically).
TOPIC_ORDER = TOPICS
TOPIC_TITLES = {
    "shapes": "Output sizes",
    "params": "Parameters and MACs",
    "layers": "Convolution and dense layers",
    "pooling": "Max pooling, forward and backward",
    "receptive": "Receptive fields and dilation",
    "saliency": "Saliency maps",
    "transfer": "Transfer learning",
    "architectures": "Classic architectures",
    QUESTIONS_TOPIC: "Numeric questions",
}

_BUILTINS = frozenset(dir(builtins))


# --------------------------------------------------------------------------- source collection


class Definition(NamedTuple):
    """One module-level statement that generated code may copy.

    Attributes:
        module: dotted name of the module that defines it, e.g. ``"cnnref.params"``.
        name: the name it binds (for an import: the bound alias).
        kind: ``"function"``, ``"class"``, ``"constant"`` or ``"import"``.
        text: its source text, with ``cnnref`` module references rewritten to plain names.
        order: position in its module (for stable output order).
    """

    module: str
    name: str
    kind: str
    text: str
    order: int


@dataclass
class _ModuleIndex:
    """What one reference module defines and imports at top level."""

    name: str
    source: str
    lines: list[str]
    defs: dict[str, ast.stmt]
    orders: dict[str, int]
    # alias -> ("module", dotted) for `import x as a` / `from pkg import mod`,
    #          ("name", dotted module, attribute) for `from mod import attr`
    imports: dict[str, tuple[str, ...]]
    import_text: dict[str, str]
    future: bool


_INDEX_CACHE: dict[str, _ModuleIndex] = {}


def reference_packages() -> tuple[str, ...]:
    """Top-level packages whose code is inlined into solutions: ``cnnref`` and the packages of
    every installed exercise plugin (:mod:`grader.plugins`), whose reference modules are
    generated from exactly like ``cnnref``'s."""
    from grader import plugins  # noqa: PLC0415

    return (REFERENCE_PACKAGE, *plugins.plugin_packages())


def _is_reference(module: str) -> bool:
    return module.split(".")[0] in reference_packages()


def _resolve_relative(module: str, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".")
    pkg = base[: len(base) - level]
    return ".".join([*pkg, target] if target else pkg)


def _module_index(module_name: str) -> _ModuleIndex:
    if module_name in _INDEX_CACHE:
        return _INDEX_CACHE[module_name]
    module = importlib.import_module(module_name)
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError) as exc:
        raise GraderFailure(f"cannot read the source of {module_name}: {exc}") from exc
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    defs: dict[str, ast.stmt] = {}
    orders: dict[str, int] = {}
    imports: dict[str, tuple[str, ...]] = {}
    import_text: dict[str, str] = {}
    future = False
    for order, node in enumerate(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[node.name] = node
            orders[node.name] = order
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    defs[target.id] = node
                    orders[target.id] = order
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                imports[bound] = ("module", alias.name if alias.asname else bound)
                import_text[bound] = (
                    f"import {alias.name} as {alias.asname}"
                    if alias.asname
                    else f"import {alias.name}"
                )
                orders[bound] = order
        elif isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                future = True
                continue
            source_module = _resolve_relative(module_name, node.level, node.module)
            for alias in node.names:
                bound = alias.asname or alias.name
                imports[bound] = ("name", source_module, alias.name)
                import_text[bound] = f"from {source_module} import {alias.name}" + (
                    f" as {alias.asname}" if alias.asname else ""
                )
                orders[bound] = order
    index = _ModuleIndex(module_name, source, lines, defs, orders, imports, import_text, future)
    _INDEX_CACHE[module_name] = index
    return index


def _segment_lines(index: _ModuleIndex, node: ast.stmt) -> tuple[int, int]:
    """1-based first and last line of ``node`` including its decorators."""
    first = node.lineno
    for deco in getattr(node, "decorator_list", []):
        first = min(first, deco.lineno)
    return first, node.end_lineno or node.lineno


def _is_module_import(index: _ModuleIndex, bound: str) -> str | None:
    """The dotted reference module that ``bound`` names, when it names a module."""
    spec = index.imports.get(bound)
    if spec is None:
        return None
    if spec[0] == "module":
        return spec[1] if _is_reference(spec[1]) else None
    dotted = f"{spec[1]}.{spec[2]}"
    if _is_reference(dotted):
        try:
            mod = importlib.import_module(spec[1])
        except ImportError:
            return None
        if inspect.ismodule(getattr(mod, spec[2], None)):
            return dotted
    return None


@dataclass
class _Collector:
    """Walks definitions and records every module-level dependency, transitively."""

    found: dict[tuple[str, str], Definition] = field(default_factory=dict)
    future: bool = False
    #: ``(module, name) -> new name`` for helpers whose names collide across modules
    renames: dict[tuple[str, str], str] = field(default_factory=dict)

    def text_and_deps(
        self, index: _ModuleIndex, node: ast.stmt
    ) -> tuple[str, list[tuple[str, str]]]:
        """``node``'s source with reference-module references rewritten, and its dependencies.

        Dependencies are ``(module, name)`` pairs of module-level things used by ``node``.
        """
        first, last = _segment_lines(index, node)
        raw = [line.encode() for line in index.lines[first - 1 : last]]
        edits: list[tuple[int, int, int, bytes]] = []  # (line, start col, end col, new)
        deps: list[tuple[str, str]] = []
        drop_lines: set[int] = set()
        local_bound: dict[str, tuple[str, str]] = {}
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom) and sub is not node:
                mod = _resolve_relative(index.name, sub.level, sub.module)
                if _is_reference(mod):
                    for alias in sub.names:
                        if alias.asname and alias.asname != alias.name:
                            raise GraderFailure(
                                f"{index.name}: `from {mod} import {alias.name} as "
                                f"{alias.asname}` inside a function cannot be inlined; "
                                "import it under its own name"
                            )
                        local_bound[alias.name] = (mod, alias.name)
                        deps.append((mod, alias.name))
                    start, end = sub.lineno, sub.end_lineno or sub.lineno
                    drop_lines.update(range(start, end + 1))
            elif isinstance(sub, ast.Import) and sub is not node:
                for alias in sub.names:
                    if _is_reference(alias.name):
                        raise GraderFailure(
                            f"{index.name}: `import {alias.name}` inside a function cannot be "
                            "inlined; use `from cnnref.x import name`"
                        )
        own = getattr(node, "name", None)
        if own is not None and (index.name, own) in self.renames:
            line_no = node.lineno - first
            found = re.search(rf"\b(?:def|class)\s+({re.escape(own)})\b".encode(), raw[line_no])
            if found is None:
                raise GraderFailure(f"{index.name}: cannot find the definition line of {own}")
            new = self.renames[(index.name, own)].encode()
            edits.append((line_no, found.start(1), found.end(1), new))

        def rename(sub: ast.expr, key: tuple[str, str]) -> None:
            if key in self.renames:
                new = self.renames[key].encode()
                edits.append((sub.lineno - first, sub.col_offset, sub.end_col_offset or 0, new))

        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.value, ast.Name)
                and (target := _is_module_import(index, sub.value.id))
            ):
                deps.append((target, sub.attr))
                if (target, sub.attr) in self.renames:
                    rename(sub, (target, sub.attr))
                    continue
                # rewrite `mod.attr` to `attr`: drop "mod" and the dot
                end = (sub.value.end_col_offset or sub.col_offset) + 1
                edits.append((sub.lineno - first, sub.col_offset, end, b""))
            elif isinstance(sub, ast.Name) and sub.id in local_bound:
                rename(sub, local_bound[sub.id])
            elif isinstance(sub, ast.Name):
                name = sub.id
                if name in index.defs and index.defs[name] is node:
                    rename(sub, (index.name, name))  # a constant's own target
                elif name in index.defs:
                    deps.append((index.name, name))
                    rename(sub, (index.name, name))
                elif name in index.imports:
                    spec = index.imports[name]
                    if spec[0] == "name" and _is_reference(spec[1]):
                        if _is_module_import(index, name):
                            continue  # handled as an Attribute
                        if name != spec[2]:
                            raise GraderFailure(
                                f"{index.name}: `from {spec[1]} import {spec[2]} as {name}` "
                                "cannot be inlined; import it under its own name"
                            )
                        deps.append((spec[1], spec[2]))
                        rename(sub, (spec[1], spec[2]))
                    elif spec[0] == "module" and _is_reference(spec[1]):
                        continue
                    else:
                        deps.append((index.name, name))
        for line_no, start, end, new in sorted(edits, reverse=True):
            line = raw[line_no]
            raw[line_no] = line[:start] + new + line[end:]
        kept = [
            line.decode() for offset, line in enumerate(raw) if (first + offset) not in drop_lines
        ]
        text = "".join(kept).rstrip("\n") + "\n"
        return text, deps

    def add(self, module: str, name: str) -> None:
        """Record ``module.name`` and everything it uses."""
        key = (module, name)
        if key in self.found or (name in _BUILTINS and not _defines(module, name)):
            return
        index = _module_index(module)
        self.future = self.future or index.future
        if name in index.imports:
            spec = index.imports[name]
            if spec[0] == "name" and _is_reference(spec[1]):
                self.add(spec[1], spec[2])
                return
            self.found[key] = Definition(
                module, name, "import", index.import_text[name] + "\n", index.orders[name]
            )
            return
        if name not in index.defs:
            raise GraderFailure(f"{module} has no top-level definition of {name!r}")
        node = index.defs[name]
        kind = (
            "function"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            else "class"
            if isinstance(node, ast.ClassDef)
            else "constant"
        )
        text, deps = self.text_and_deps(index, node)
        shown = self.renames.get(key, name)
        self.found[key] = Definition(module, shown, kind, text, index.orders[name])
        for dep in deps:
            self.add(*dep)


def _defines(module: str, name: str) -> bool:
    index = _module_index(module)
    return name in index.defs or name in index.imports


def reference_module(function: Callable[..., Any]) -> str:
    """Dotted module name of a reference function (unwrapping decorators)."""
    return inspect.unwrap(function).__module__


class FunctionCode(NamedTuple):
    """Source pieces of one reference function.

    Attributes:
        name: function name.
        header: decorators, ``def`` line(s) and docstring, verbatim (stub = header + raise).
        indent: indentation of the body, e.g. ``"    "``.
        full: the whole definition (solution), reference-module references rewritten.
        deps: every module-level definition it uses, transitively (not itself).
    """

    name: str
    header: str
    indent: str
    full: str
    deps: tuple[Definition, ...]


_FUNCTION_CODE_CACHE: dict[tuple[Any, frozenset[tuple[tuple[str, str], str]]], FunctionCode] = {}


def function_code(
    function: Callable[..., Any], renames: dict[tuple[str, str], str] | None = None
) -> FunctionCode:
    """Collect a reference function's source, header and transitive dependencies.

    The result depends only on the reference's source (read once per process, like
    :func:`_module_index`), so it is computed once per ``(function, renames)``: releasing a
    class's bundles renders the same functions for every student.

    Raises:
        GraderFailure: the function has no docstring (a stub needs one), or uses a reference
            helper in a way that cannot be inlined.
    """
    key = (inspect.unwrap(function), frozenset((renames or {}).items()))
    if key not in _FUNCTION_CODE_CACHE:
        _FUNCTION_CODE_CACHE[key] = _function_code(function, renames)
    return _FUNCTION_CODE_CACHE[key]


def _function_code(
    function: Callable[..., Any], renames: dict[tuple[str, str], str] | None
) -> FunctionCode:
    function = inspect.unwrap(function)
    module, name = function.__module__, function.__name__
    index = _module_index(module)
    node = index.defs.get(name)
    if isinstance(node, ast.ClassDef):
        return _class_code(index, node, renames)
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise GraderFailure(f"{module}.{name} is not a top-level function; cannot generate it")
    if ast.get_docstring(node) is None:
        raise GraderFailure(f"{module}.{name} has no docstring; a stub needs one (with shapes)")
    collector = _Collector(renames=dict(renames or {}))
    collector.add(module, name)
    full = collector.found.pop((module, name)).text
    first, _ = _segment_lines(index, node)
    docstring_end = node.body[0].end_lineno or node.body[0].lineno
    header = "".join(index.lines[first - 1 : docstring_end]).rstrip("\n") + "\n"
    body_line = index.lines[node.body[0].lineno - 1]
    indent = body_line[: len(body_line) - len(body_line.lstrip())]
    deps = tuple(sorted(collector.found.values(), key=_definition_key))
    return FunctionCode(name, header, indent, full, deps)


def plan_renames(functions: Sequence[Callable[..., Any]]) -> dict[tuple[str, str], str]:
    """New names for helpers that two reference modules define differently under one name.

    The module of the first function keeps its names; a colliding helper of another module
    ``cnnref.shapes`` becomes ``_shapes_<name>`` (references to it are rewritten too).
    """
    if not functions:
        return {}
    primary = reference_module(functions[0])
    seen: dict[str, dict[str, str]] = {}  # name -> module -> text
    for function in functions:
        code = function_code(function)
        for d in (
            *code.deps,
            Definition(reference_module(function), code.name, "function", code.full, 0),
        ):
            if d.kind != "import":
                seen.setdefault(d.name, {})[d.module] = d.text
    renames: dict[tuple[str, str], str] = {}
    for name, by_module in seen.items():
        if len(set(by_module.values())) < 2:
            continue
        keep = primary if primary in by_module else min(by_module)
        for module in by_module:
            if module != keep:
                renames[(module, name)] = f"_{module.rsplit('.', 1)[-1]}_{name.lstrip('_')}"
    return renames


def _class_methods(node: ast.ClassDef) -> tuple[ast.FunctionDef, ast.FunctionDef] | None:
    methods = {m.name: m for m in node.body if isinstance(m, ast.FunctionDef)}
    if "__init__" in methods and "forward" in methods:
        return methods["__init__"], methods["forward"]
    return None


def _class_code(
    index: _ModuleIndex, node: ast.ClassDef, renames: dict[tuple[str, str], str] | None
) -> FunctionCode:
    """A reference *class* (an ``nn.Module`` the student builds, e.g. a ResNet block).

    The stub keeps the class line and docstring, ``__init__`` with its docstring and only
    ``super().__init__()``, and ``forward`` with its docstring; the stub's ``raise`` goes in
    ``forward`` (the header ends there). The solution is the whole class.
    """
    where = f"{index.name}.{node.name}"
    methods = _class_methods(node)
    if ast.get_docstring(node) is None or methods is None:
        raise GraderFailure(
            f"{where}: a reference class needs a docstring, __init__ and forward to be generated"
        )

    def upto_docstring(n: ast.FunctionDef) -> str:
        first, _ = _segment_lines(index, n)
        body0 = n.body[0]
        has_doc = isinstance(body0, ast.Expr) and isinstance(body0.value, ast.Constant)
        end = (body0.end_lineno or body0.lineno) if has_doc else body0.lineno - 1
        return "".join(index.lines[first - 1 : end])

    def body_indent(n: ast.FunctionDef) -> str:
        line = index.lines[n.body[-1].lineno - 1]
        return line[: len(line) - len(line.lstrip())]

    init, forward = methods
    class_head = "".join(index.lines[node.lineno - 1 : node.body[0].end_lineno or node.lineno])
    header = (
        class_head.rstrip("\n")
        + "\n\n"
        + upto_docstring(init).rstrip("\n")
        + f"\n{body_indent(init)}super().__init__()\n\n"
        + upto_docstring(forward).rstrip("\n")
        + "\n"
    )
    collector = _Collector(renames=dict(renames or {}))
    collector.add(index.name, node.name)
    full = collector.found.pop((index.name, node.name)).text
    deps = tuple(sorted(collector.found.values(), key=_definition_key))
    return FunctionCode(node.name, header, body_indent(forward), full, deps)


def _definition_key(d: Definition) -> tuple[int, str, int, str]:
    return (0 if d.kind == "import" else 1, d.module, d.order, d.name)


def _header_names(function: Callable[..., Any]) -> set[str]:
    """Names used by a function's decorators, signature and annotations (not its body)."""
    function = inspect.unwrap(function)
    node = _module_index(function.__module__).defs[function.__name__]
    if isinstance(node, ast.ClassDef):  # a reference class: its bases and method signatures
        class_parts: list[ast.AST] = [*node.decorator_list, *node.bases]
        for method in _class_methods(node) or ():
            class_parts += [method.args, *([method.returns] if method.returns else [])]
        return {n.id for part in class_parts for n in ast.walk(part) if isinstance(n, ast.Name)}
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    parts: list[ast.AST] = [*node.decorator_list, node.args]
    if node.returns is not None:
        parts.append(node.returns)
    return {n.id for part in parts for n in ast.walk(part) if isinstance(n, ast.Name)}


# --------------------------------------------------------------------------- module assembly


class ModuleCode(NamedTuple):
    """The pieces a module template renders.

    Attributes:
        future: whether to start with ``from __future__ import annotations``.
        imports: import lines, sorted.
        helpers: helper definitions (classes, constants, functions), each a source block.
        exercises: one entry per exercise: spec and the code block.
    """

    future: bool
    imports: tuple[str, ...]
    helpers: tuple[str, ...]
    exercises: tuple[tuple[ExerciseSpec, str], ...]


def _merge(definitions: Iterable[Definition]) -> list[Definition]:
    """Deduplicate by name; two different definitions of one name is an error."""
    by_name: dict[str, Definition] = {}
    for d in definitions:
        seen = by_name.get(d.name)
        if seen is None:
            by_name[d.name] = d
        elif seen.text != d.text:
            raise GraderFailure(
                f"generated module would define {d.name!r} twice, differently "
                f"({seen.module} and {d.module}); rename one of the reference helpers"
            )
    return sorted(by_name.values(), key=_definition_key)


def _original_name(d: Definition, renames: dict[tuple[str, str], str]) -> str:
    for (module, name), new in renames.items():
        if module == d.module and new == d.name:
            return name
    return d.name


def _closure_for_stub(
    code: FunctionCode,
    function: Callable[..., Any],
    renames: dict[tuple[str, str], str],
) -> list[Definition]:
    """What a stub keeps: imports and constants its header uses, and the classes it uses
    anywhere with everything those classes need. Helper functions of the body are answers."""
    header_names = _header_names(function)
    keep: dict[tuple[str, str], Definition] = {}
    module = reference_module(function)

    def add_with_deps(d: Definition) -> None:
        key = (d.module, d.name)
        if key in keep:
            return
        keep[key] = d
        collector = _Collector(renames=dict(renames))
        collector.add(d.module, _original_name(d, renames))
        for sub in collector.found.values():
            if (sub.module, sub.name) != key:
                keep.setdefault((sub.module, sub.name), sub)

    for d in code.deps:
        if (
            (d.kind == "class" or d.kind == "import" and not _is_reference(d.text.split()[1]))
            or d.module == module
            and d.name in header_names
        ):
            add_with_deps(d)
    return list(keep.values())


def _function_names(specs: Sequence[ExerciseSpec]) -> set[str]:
    return {s.function for s in specs}


def sort_imports(lines: Iterable[str]) -> tuple[str, ...]:
    """Import statements merged per module and sorted like isort: the standard library, a
    blank line (an empty string), then third-party packages."""
    plain: set[str] = set()
    names: dict[str, set[str]] = {}
    for line in lines:
        line = line.strip()
        if line.startswith("from "):
            module, _, imported = line[len("from ") :].partition(" import ")
            names.setdefault(module, set()).add(imported.strip())
        elif line:
            plain.add(line)
    entries = [(line.split()[1], line) for line in plain]
    entries += [(m, f"from {m} import {', '.join(sorted(n))}") for m, n in names.items()]

    def group(module: str) -> int:
        return 0 if module.split(".")[0] in sys.stdlib_module_names else 1

    ordered = sorted(entries, key=lambda e: (group(e[0]), e[1].startswith("from "), e[0], e[1]))
    out: list[str] = []
    for index, (module, line) in enumerate(ordered):
        if index and group(module) != group(ordered[index - 1][0]):
            out.append("")
        out.append(line)
    return tuple(out)


def module_code(specs: Sequence[ExerciseSpec], *, solution: bool) -> ModuleCode:
    """Assemble one topic module (stub or solution) from its specs' reference functions."""
    for spec in specs:
        if spec.reference_function is None:
            raise GraderFailure(
                f"exercise {spec.name!r} has no reference_function: generation needs the "
                "reference's signature and docstring"
            )
    renames = plan_renames([s.reference_function for s in specs])
    codes = [(spec, function_code(spec.reference_function, renames)) for spec in specs]
    exercise_names = _function_names(specs)
    definitions: list[Definition] = []
    for spec, code in codes:
        if solution:
            definitions.extend(code.deps)
        else:
            definitions.extend(_closure_for_stub(code, spec.reference_function, renames))
    merged = [d for d in _merge(definitions) if d.name not in exercise_names]
    future = any(_module_index(reference_module(s.reference_function)).future for s, _ in codes)
    imports = sort_imports(d.text for d in merged if d.kind == "import")
    helpers = tuple(d.text for d in merged if d.kind != "import")
    blocks = []
    for spec, code in codes:
        if solution:
            blocks.append((spec, code.full))
        else:
            stub = (
                f'{code.indent}raise NotImplementedError("Exercise {spec.number}: {spec.name}")\n'
            )
            blocks.append((spec, code.header + stub))
    return ModuleCode(future, imports, helpers, tuple(blocks))


# --------------------------------------------------------------------------- per-seed values


def exercise_rng(seed: int, name: str) -> np.random.Generator:
    """The per-exercise generator, exactly the engine's (so texts match what is graded)."""
    from grader.engine import exercise_rng as engine_rng  # noqa: PLC0415

    return engine_rng(seed, name)


def question_case(spec: ExerciseSpec, seed: int) -> dict[str, Any]:
    """The one case of a numeric question for ``seed``: the numbers its text shows."""
    cases = spec.make_cases(exercise_rng(seed, spec.name))
    if len(cases) != 1:
        raise GraderFailure(
            f"question {spec.name!r} must draw exactly one case per seed, drew {len(cases)}"
        )
    return cases[0]


def question_text(spec: ExerciseSpec, seed: int) -> str:
    """The question's text with this seed's numbers."""
    if not spec.question:
        raise GraderFailure(f"question {spec.name!r} has no question text")
    case = question_case(spec, seed)
    try:
        return spec.question.format(**{k: _plain(v) for k, v in case.items()})
    except (KeyError, IndexError, ValueError) as exc:
        raise GraderFailure(
            f"question {spec.name!r}: its text does not fit its case: {exc}"
        ) from exc


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- templates


def topic_title(topic: str) -> str:
    """The heading of a topic's module and notebook."""
    return TOPIC_TITLES.get(topic, topic.replace("_", " ").capitalize())


def template_dir() -> Path:
    """Folder of the jinja2 templates (the ``grader.templates`` package)."""
    import grader.templates  # noqa: PLC0415

    return Path(grader.templates.__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def template_env() -> jinja2.Environment:
    """The jinja2 environment of ``templates/`` (one per process: compiled templates are
    kept)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["comment"] = lambda text, prefix="# ": "\n".join(
        (prefix + line).rstrip() for line in str(text).splitlines()
    )
    env.filters["pyrepr"] = repr
    env.filters["points"] = lambda value: f"{value:g} point" + ("" if value == 1 else "s")
    return env


def header_line(seed: int | None, student: str | None, command: str = "generate") -> str:
    """What the first line of every generated file says about how to regenerate it.

    A per-student file names the student, not the seed (the seed is derived from the course
    secret and must stay unknown to the student); a released file never names its seed (it is
    the seed the instructor grades with).
    """
    if command == "release":
        return "cnnlab release" + (f" --student {student}" if student is not None else "")
    if student is not None:
        return f"cnnlab {command} --student {student}"
    return f"cnnlab {command} --seed {seed}"


# --------------------------------------------------------------------------- notebooks


_CELL_MARK = re.compile(r"^%% cell (\w+)(?: (\S.*))?$")


def cells_from_template(text: str) -> list[dict[str, Any]]:
    """Split a rendered notebook template into cells.

    Each cell starts with a line ``%% cell <markdown|code> [json metadata]``; its source is
    what follows up to the next marker, with surrounding blank lines removed.
    """
    cells: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            current["source"] = "\n".join(body).strip("\n")
            cells.append(current)

    for line in text.splitlines():
        mark = _CELL_MARK.match(line)
        if mark:
            close()
            kind, meta = mark.group(1), mark.group(2)
            if kind not in ("markdown", "code"):
                raise GraderFailure(f"notebook template: unknown cell type {kind!r}")
            current = {"cell_type": kind, "metadata": json.loads(meta) if meta else {}}
            body = []
        elif current is not None:
            body.append(line)
    close()
    return cells


def notebook_json(cells: list[dict[str, Any]]) -> str:
    """A deterministic nbformat-4 document (cell ids from content and position)."""
    out_cells = []
    for position, cell in enumerate(cells):
        digest = hashlib.sha256(f"{position}\0{cell['source']}".encode()).hexdigest()[:12]
        entry: dict[str, Any] = {
            "cell_type": cell["cell_type"],
            "id": f"c{position:02d}-{digest}",
            "metadata": cell["metadata"],
            "source": cell["source"],
        }
        if cell["cell_type"] == "code":
            entry["execution_count"] = None
            entry["outputs"] = []
        out_cells.append(entry)
    document = {
        "cells": out_cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- the problem set


def _topic_key(topic: str) -> tuple[int, str]:
    return (TOPIC_ORDER.index(topic) if topic in TOPIC_ORDER else len(TOPIC_ORDER), topic)


def topics_of(specs: Sequence[ExerciseSpec]) -> list[tuple[str, list[ExerciseSpec]]]:
    """Specs grouped by topic, topics in lecture order, specs in registry order."""
    groups: dict[str, list[ExerciseSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.topic, []).append(spec)
    return [(t, groups[t]) for t in sorted(groups, key=_topic_key)]


@dataclass(frozen=True)
class QuestionView:
    """What the templates show of one numeric question."""

    spec: ExerciseSpec
    text: str
    worked: str  # the solution expression, e.g. "16 * (5 * 5 * 8) + 16"


def _question_views(specs: Sequence[ExerciseSpec], seed: int) -> list[QuestionView]:
    from grader.exercises import questions as question_module  # noqa: PLC0415

    views = []
    for spec in specs:
        case = question_case(spec, seed)
        views.append(
            QuestionView(spec, question_text(spec, seed), question_module.worked(spec, case))
        )
    return views


def render_topic(
    topic: str,
    specs: Sequence[ExerciseSpec],
    *,
    seed: int,
    solution: bool,
    student: str | None = None,
    command: str = "generate",
) -> str:
    """One generated Python module: ``exercises/<topic>.py`` or ``solutions/<topic>.py``."""
    env = template_env()
    context = {
        "topic": topic,
        "title": topic_title(topic),
        "header": header_line(seed, student, command),
        "solution": solution,
        "specs": list(specs),
    }
    if topic == QUESTIONS_TOPIC:
        return env.get_template("questions.py.j2").render(
            questions=_question_views(specs, seed), **context
        )
    code = module_code(specs, solution=solution)
    return env.get_template("module.py.j2").render(code=code, **context)


class NotebookSegment(NamedTuple):
    """One solution region of an exercise cell.

    Attributes:
        header: what precedes the region: decorators, ``def``/``class`` line(s), docstrings
            (and, in ``__init__``, the ``super().__init__()`` call).
        solution: the body with the helpers it needs nested in front (indented), which the
            nbgrader source puts between ``### BEGIN SOLUTION`` and ``### END SOLUTION``.
        stub: the student's body: ``raise NotImplementedError("Exercise N: name")``.
        indent: the body's indentation.
    """

    header: str
    solution: str
    stub: str
    indent: str


class NotebookExercise(NamedTuple):
    """One exercise as a notebook shows it: a function is one segment; a class (an
    ``nn.Module`` the student builds) is one segment per method, so the student's copy raises
    ``NotImplementedError`` when the module is built or called."""

    spec: ExerciseSpec
    segments: tuple[NotebookSegment, ...]


class NotebookCode(NamedTuple):
    """The code of a topic notebook: one locked setup cell and one cell per exercise."""

    setup: str
    exercises: tuple[NotebookExercise, ...]


def _indent_block(text: str, indent: str) -> str:
    return "".join(indent + line if line.strip() else line for line in text.splitlines(True))


def notebook_code(specs: Sequence[ExerciseSpec]) -> NotebookCode:
    """Split a topic's code between the setup cell (imports, helper types) and the exercise
    cells (each solution carries its helper functions nested, so nbgrader can strip them)."""
    stub = module_code(specs, solution=False)
    solution = module_code(specs, solution=True)
    imports = sort_imports([*stub.imports, *solution.imports])
    setup_parts = ["\n".join(imports)] if imports else []
    setup_parts += [h.rstrip("\n") for h in stub.helpers]
    setup = "\n\n\n".join(setup_parts)
    shown_in_setup = {h for h in stub.helpers}
    exercise_names = _function_names(specs)
    renames = plan_renames([s.reference_function for s in specs if s.reference_function])
    views = []
    for spec in specs:
        assert spec.reference_function is not None  # module_code checked it
        code = function_code(spec.reference_function, renames)
        nested = [
            d
            for d in code.deps
            if d.kind != "import" and d.text not in shown_in_setup and d.name not in exercise_names
        ]
        nested.sort(key=lambda d: (0 if d.kind == "constant" else 1, d.module, d.order))
        message = f"Exercise {spec.number}: {spec.name}"
        if inspect.isclass(inspect.unwrap(spec.reference_function)):
            if nested:
                raise GraderFailure(
                    f"{spec.name}: a class exercise cannot nest helper functions "
                    f"({', '.join(d.name for d in nested)}); make them module-level classes"
                )
            segments = _class_segments(code.full, message)
        else:
            header_lines = code.header.count("\n")
            body = "".join(code.full.splitlines(True)[header_lines:])
            helpers = "".join(_indent_block(d.text, code.indent) + "\n" for d in nested)
            segments = (
                NotebookSegment(
                    header=code.header.rstrip("\n"),
                    solution=(helpers + body).rstrip("\n"),
                    stub=f'{code.indent}raise NotImplementedError("{message}")',
                    indent=code.indent,
                ),
            )
        views.append(NotebookExercise(spec=spec, segments=segments))
    return NotebookCode(setup, tuple(views))


def _is_super_init(stmt: ast.stmt) -> bool:
    """``super().__init__(...)`` as a statement."""
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "__init__"
        and isinstance(call.func.value, ast.Call)
        and isinstance(call.func.value.func, ast.Name)
        and call.func.value.func.id == "super"
    )


def _class_segments(full: str, message: str) -> tuple[NotebookSegment, ...]:
    """Split a class's source into one solution region per method body.

    Each region starts after the method's docstring (and, in ``__init__``, after
    ``super().__init__()``, which stays so that the student's module can be built) and ends
    with the method; everything between methods stays in the next segment's header.
    """
    lines = full.splitlines(True)
    (cls,) = ast.parse(full).body
    assert isinstance(cls, ast.ClassDef)
    segments = []
    emitted = 0  # lines of ``full`` already placed in a segment
    for method in cls.body:
        if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = method.body
        skip = 1 if ast.get_docstring(method) is not None else 0
        if method.name == "__init__" and len(body) > skip and _is_super_init(body[skip]):
            skip += 1
        if skip == len(body):
            continue  # nothing to write in this method
        first = body[skip].lineno - 1
        line = lines[first]
        indent = line[: len(line) - len(line.lstrip())]
        segments.append(
            NotebookSegment(
                header="".join(lines[emitted:first]).rstrip("\n"),
                solution="".join(lines[first : method.end_lineno]).rstrip("\n"),
                stub=f'{indent}raise NotImplementedError("{message}")',
                indent=indent,
            )
        )
        emitted = method.end_lineno or first + 1
    if not segments or "".join(lines[emitted:]).strip():
        raise GraderFailure(f"{cls.name}: cannot split the class into method bodies for a notebook")
    return tuple(segments)


def render_notebook(
    topic: str,
    specs: Sequence[ExerciseSpec],
    *,
    seed: int,
    solution: bool,
    student: str | None = None,
    command: str = "generate",
) -> str:
    """The nbgrader notebook of a topic (``solution=True``: the nbgrader *source* version,
    solutions between ``### BEGIN SOLUTION`` / ``### END SOLUTION``).

    No cell names ``seed`` (nbgrader releases every cell except the solution regions): the
    numbers of the questions come from it, the seed itself is configured where grading happens
    (``CNNLAB_GRADING_SEED``, or ``grader.problemset.nbgrader_autograde``). ``student`` and
    ``command`` are accepted for symmetry with :func:`render_topic` and do not change the text.
    """
    env = template_env()
    questions = _question_views(specs, seed) if topic == QUESTIONS_TOPIC else []
    code = None if topic == QUESTIONS_TOPIC else notebook_code(specs)
    text = env.get_template("notebook.j2").render(
        topic=topic,
        title=topic_title(topic),
        solution=solution,
        specs=list(specs),
        code=code,
        questions=questions,
        json=json,
    )
    return notebook_json(cells_from_template(text))


def render_readme(
    specs: Sequence[ExerciseSpec],
    *,
    seed: int,
    student: str | None = None,
    bundle: bool = False,
    command: str = "generate",
    checked_points: float | None = None,
) -> str:
    """The student README (``exercises/README.md``, and the bundle's README).

    ``checked_points``: in a bundle, the points its public cases check (the rest, the numeric
    questions, is checked when the instructor grades); default: all of them.
    """
    total = sum(s.points for s in specs)
    return (
        template_env()
        .get_template("student_readme.md.j2")
        .render(
            topics=topics_of(specs),
            titles=TOPIC_TITLES,
            header=header_line(seed, student, command),
            total=total,
            checked=total if checked_points is None else checked_points,
            bundle=bundle,
            questions_topic=QUESTIONS_TOPIC,
        )
    )


def render_problem_set(
    specs: Sequence[ExerciseSpec] | None = None,
    *,
    seed: int,
    student: str | None = None,
    notebooks: bool = True,
    command: str = "generate",
) -> dict[str, str]:
    """Every generated file as text, keyed by its path relative to the output folder.

    ``exercises/<topic>.py`` (stubs), ``solutions/<topic>.py``, ``exercises/README.md`` and,
    with ``notebooks``, ``exercises/notebooks/<topic>.ipynb`` (student notebooks) and
    ``solutions/notebooks/<topic>.ipynb`` (nbgrader source notebooks).
    """
    if specs is None:
        from grader import registry  # noqa: PLC0415

        specs = registry.all_specs()
    if not specs:
        raise ConfigError("no exercises are registered: nothing to generate")
    files: dict[str, str] = {}
    for topic, group in topics_of(specs):
        how = {"seed": seed, "student": student, "command": command}
        files[f"exercises/{topic}.py"] = render_topic(topic, group, solution=False, **how)
        files[f"solutions/{topic}.py"] = render_topic(topic, group, solution=True, **how)
        if notebooks:
            files[f"exercises/notebooks/{topic}.ipynb"] = render_notebook(
                topic, group, solution=False, **how
            )
            files[f"solutions/notebooks/{topic}.ipynb"] = render_notebook(
                topic, group, solution=True, **how
            )
    files["exercises/README.md"] = render_readme(specs, seed=seed, student=student, command=command)
    return dict(sorted(files.items()))


# --------------------------------------------------------------------------- writing


def current_umask() -> int:
    """This process's umask (reading it means setting it: it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a normal file here
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(folder: Path) -> dict[str, str]:
    """``relative path -> sha256`` of the files generated into ``folder`` last time."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    entries: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, _, rel = line.partition("  ")
            entries[rel] = digest
    return entries


class WriteReport(NamedTuple):
    """What :func:`write_problem_set` did.

    Attributes:
        written: paths (relative to the output folder) whose content changed or is new.
        unchanged: paths already identical.
        removed: stale generated files deleted (generated before, no longer produced).
    """

    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


def write_problem_set(files: dict[str, str], out: Path, *, force: bool = False) -> WriteReport:
    """Write ``files`` under ``out`` atomically, one file at a time.

    A file that exists and was *not* produced by the last generation (it is absent from the
    folder's manifest, or its content no longer matches the manifest: somebody edited it) is
    never overwritten unless ``force``: the whole write is refused before anything changes.

    Raises:
        ConfigError: ``out`` is not a folder, or files would overwrite edited work.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; pass a folder")
    roots = sorted({rel.split("/", 1)[0] for rel in files})
    manifests = {root: read_manifest(out / root) for root in roots}
    conflicts: list[str] = []
    for rel, text in files.items():
        root, inner = rel.split("/", 1)
        target = out / rel
        if not target.exists() or force:
            continue
        current = target.read_bytes()
        if current == text.encode():
            continue
        if manifests[root].get(inner) != _sha256(current):
            conflicts.append(rel)
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (
            f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        )
        raise ConfigError(
            f"refusing to overwrite files that were edited since they were generated: {shown}. "
            "Move your work elsewhere (or pass --out to generate into another folder), "
            "or pass --force to overwrite them."
        )
    written, unchanged, removed = [], [], []
    for rel, text in files.items():
        target = out / rel
        if target.exists() and target.read_bytes() == text.encode():
            unchanged.append(rel)
            continue
        atomic_write(target, text)
        written.append(rel)
    for root in roots:
        new_inner = {
            rel.split("/", 1)[1]: text for rel, text in files.items() if rel.startswith(root + "/")
        }
        for inner, digest in manifests[root].items():
            stale = out / root / inner
            if inner in new_inner or not stale.is_file():
                continue
            if _sha256(stale.read_bytes()) == digest:  # untouched since generated
                stale.unlink()
                removed.append(f"{root}/{inner}")
        lines = [f"# files generated by cnnlab into {root}/ (sha256); do not edit"]
        lines += [f"{_sha256(t.encode())}  {inner}" for inner, t in sorted(new_inner.items())]
        manifest_text = "\n".join(lines) + "\n"
        manifest_path = out / root / MANIFEST_NAME
        if not manifest_path.exists() or manifest_path.read_text() != manifest_text:
            atomic_write(manifest_path, manifest_text)
    return WriteReport(tuple(written), tuple(unchanged), tuple(removed))


def generate(
    out: Path | str = ".",
    *,
    seed: int,
    student: str | None = None,
    specs: Sequence[ExerciseSpec] | None = None,
    force: bool = False,
    notebooks: bool = True,
) -> WriteReport:
    """Render the problem set for ``seed`` and write it under ``out``.

    See :func:`render_problem_set` for the files and :func:`write_problem_set` for the rules.
    """
    files = render_problem_set(specs, seed=seed, student=student, notebooks=notebooks)
    return write_problem_set(files, Path(out), force=force)


def module_is_generated(path: Path) -> bool:
    """Whether a file starts with a cnnlab generation header."""
    try:
        first = path.read_text(errors="replace").splitlines()[:1]
    except OSError:
        return False
    return bool(first) and first[0].startswith("# generated by cnnlab")


__all__ = [
    "Definition",
    "FunctionCode",
    "ModuleCode",
    "QuestionView",
    "WriteReport",
    "atomic_write",
    "cells_from_template",
    "exercise_rng",
    "function_code",
    "generate",
    "header_line",
    "module_code",
    "module_is_generated",
    "notebook_json",
    "question_case",
    "question_text",
    "read_manifest",
    "render_notebook",
    "render_problem_set",
    "render_readme",
    "render_topic",
    "template_dir",
    "template_env",
    "topics_of",
    "write_problem_set",
]
