"""Cases and outputs as ``.npz``: the only data that crosses the sandbox boundary.

A *case* (the keyword arguments of one student call) is a dict of numpy arrays, Python
``int``/``float``/``bool``/``str``/``None`` and tuples/lists/dicts of those. :func:`encode_case`
flattens it to plain arrays (0-d arrays for scalars, ``<U`` arrays for strings) plus a small
JSON manifest (stored as a ``<U`` array under :data:`MANIFEST_KEY`) that records the types and
the nesting, so that :func:`decode_case` gives back exactly what went in (Python scalars stay
Python scalars, tuples stay tuples).

Outputs travel the other way and are *untrusted*: :func:`load_npz_strict` reads them with
``allow_pickle=False``, checks every member's header before reading its data (no zip bombs,
no shape that claims terabytes), and accepts only ``type(x) is np.ndarray`` of a numeric
(``b``, ``i``, ``u``, ``f``) dtype. Anything else raises :class:`BadArrayFile`.

This module runs in the parent *and* in the sandboxed child; it imports nothing of the
reference.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from grader.errors import CnnlabError

MANIFEST_KEY = "__case__"
NUMERIC_KINDS = "biuf"
#: Default cap on the uncompressed size of one array read back from a child (bytes).
MAX_ARRAY_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 256
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


class BadArrayFile(CnnlabError):
    """An ``.npz`` that is not a plain set of numeric arrays (or not an ``.npz`` at all)."""


class CaseEncodingError(TypeError):
    """A case value the encoding does not support (a programming error in an exercise spec)."""


# --------------------------------------------------------------------------- encoding


def encode_case(case: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``case`` as flat plain arrays plus a manifest, ready for :func:`save_npz`.

    Args:
        case: keyword arguments of one call; values are ndarrays (any non-object dtype),
            ``int``, ``float``, ``bool``, ``str``, ``None``, numpy scalars (stored as Python
            scalars) and tuples/lists/str-keyed dicts of those.

    Returns:
        ``{key: array}``; top-level arrays and scalars keep their argument name as key.

    Raises:
        CaseEncodingError: for an unsupported value (say a live object).
    """
    arrays: dict[str, np.ndarray] = {}

    def leaf_key(path: tuple[str, ...]) -> str:
        key = ".".join(path)
        if not _SAFE_KEY.match(key) or key in arrays or key == MANIFEST_KEY:
            key = f"v{len(arrays)}"
            while key in arrays:
                key += "_"
        return key

    def enc(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biufcU" or value.dtype.fields is not None:
                raise CaseEncodingError(
                    f"case value {'.'.join(path)!r}: arrays must have a plain numeric or "
                    f"string dtype, got {value.dtype}"
                )
            key = leaf_key(path)
            arrays[key] = np.array(value, copy=True)  # a plain ndarray, never a subclass
            return {"t": "array", "k": key}
        if isinstance(value, (bool, np.bool_)):
            key = leaf_key(path)
            arrays[key] = np.array(bool(value))
            return {"t": "bool", "k": key}
        if isinstance(value, (int, np.integer)):
            key = leaf_key(path)
            arrays[key] = np.array(int(value), dtype=np.int64)
            return {"t": "int", "k": key}
        if isinstance(value, (float, np.floating)):
            key = leaf_key(path)
            arrays[key] = np.array(float(value), dtype=np.float64)
            return {"t": "float", "k": key}
        if isinstance(value, str):
            key = leaf_key(path)
            arrays[key] = np.array(value, dtype=f"<U{max(1, len(value))}")
            return {"t": "str", "k": key}
        if value is None:
            return {"t": "none"}
        if isinstance(value, (tuple, list)):
            tag = "tuple" if isinstance(value, tuple) else "list"
            return {"t": tag, "items": [enc(v, (*path, str(i))) for i, v in enumerate(value)]}
        if isinstance(value, Mapping):
            items = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise CaseEncodingError(f"case dict keys must be str, got {k!r}")
                items[k] = enc(v, (*path, k))
            return {"t": "dict", "items": items}
        raise CaseEncodingError(
            f"case value {'.'.join(path)!r} has unsupported type {type(value).__name__}; "
            "cases hold arrays, numbers, strings, None and tuples/lists/dicts of those"
        )

    tree = {}
    for name, value in case.items():
        if not isinstance(name, str):
            raise CaseEncodingError(f"case keys must be str, got {name!r}")
        tree[name] = enc(value, (name,))
    manifest = json.dumps({"version": 1, "args": tree}, sort_keys=True)
    arrays[MANIFEST_KEY] = np.array(manifest)
    return arrays


def decode_case(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The case :func:`encode_case` flattened into ``arrays`` (fresh copies of every array)."""
    if MANIFEST_KEY not in arrays:
        raise BadArrayFile(f"not an encoded case: no {MANIFEST_KEY!r} entry")
    try:
        manifest = json.loads(str(arrays[MANIFEST_KEY][()]))
        tree = manifest["args"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadArrayFile(f"the case manifest is unreadable: {exc}") from exc

    def dec(node: dict[str, Any]) -> Any:
        tag = node["t"]
        if tag == "none":
            return None
        if tag in ("tuple", "list"):
            items = [dec(n) for n in node["items"]]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict":
            return {k: dec(n) for k, n in node["items"].items()}
        arr = arrays[node["k"]]
        if tag == "array":
            return np.array(arr, copy=True)
        if tag == "bool":
            return bool(arr[()])
        if tag == "int":
            return int(arr[()])
        if tag == "float":
            return float(arr[()])
        if tag == "str":
            return str(arr[()])
        raise BadArrayFile(f"unknown type tag {tag!r} in the case manifest")

    return {name: dec(node) for name, node in tree.items()}


# --------------------------------------------------------------------------- files


def save_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    Never pickles: object arrays raise ``ValueError``. The file is created ``0o644`` so that
    an unprivileged sandbox child (or a student, for public cases) can read it.
    """
    path = Path(path)
    for key, arr in arrays.items():
        if not isinstance(arr, np.ndarray) or arr.dtype.hasobject:
            raise ValueError(f"{key!r}: only plain ndarrays without objects can be saved")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **dict(arrays))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise
    return path


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return isinstance(exc, OSError)


def open_regular(path: str | os.PathLike[str], max_bytes: int | None = None) -> tuple[Any, int]:
    """``(binary file, size)`` for ``path`` if it is a regular file of at most ``max_bytes``.

    Opened with ``O_NOFOLLOW|O_NONBLOCK`` (a symlink is refused, a FIFO cannot block) and
    checked with ``fstat`` on the descriptor itself, so what is checked is what is read.

    Raises:
        FileNotFoundError: nothing at ``path``.
        BadArrayFile: a link, FIFO, device, folder, or a file over ``max_bytes``.
    """
    name = os.path.basename(os.fspath(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise BadArrayFile(f"{name} cannot be opened: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadArrayFile(f"{name} is not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise BadArrayFile(f"{name} is {info.st_size} bytes, more than the {max_bytes} allowed")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), info.st_size


def read_regular(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """All of a regular file of at most ``max_bytes`` (see :func:`open_regular`)."""
    fh, _size = open_regular(path, max_bytes)
    with fh:
        return fh.read(max_bytes + 1)[:max_bytes]


def read_regular_prefix(path: str | os.PathLike[str], cap: int) -> tuple[bytes, int]:
    """``(first cap bytes, size)`` of a regular file of any size (see :func:`open_regular`)."""
    fh, size = open_regular(path)
    with fh:
        return fh.read(cap), size


#: Compression methods an ``.npz`` member may use (``np.savez`` stores, ``savez_compressed``
#: deflates); bz2 and lzma members are refused before anything is decompressed.
ALLOWED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
#: Room for each member's ``.npy`` header on top of its data (bytes).
NPY_HEADER_SLACK = 4096


def load_npz_strict(
    path: str | os.PathLike[str],
    *,
    kinds: str = NUMERIC_KINDS,
    max_array_bytes: int = MAX_ARRAY_BYTES,
    max_file_bytes: int | None = None,
    max_total_bytes: int | None = None,
    max_members: int = MAX_MEMBERS,
) -> dict[str, np.ndarray]:
    """Read an untrusted ``.npz`` into ``{name: ndarray}``, refusing anything unusual.

    The file must be a regular file (opened ``O_NOFOLLOW|O_NONBLOCK``, checked with
    ``fstat``). From the zip directory alone, *before anything is decompressed*: at most
    ``max_members`` members, each stored or deflated (no bz2/lzma), each declaring at most
    ``max_array_bytes`` (+ header) and all together at most ``max_total_bytes`` (+ headers)
    uncompressed. Decompression never goes past a member's declared size. Then every member
    must be a ``.npy`` whose header declares a plain dtype of one of ``kinds`` (no objects, no
    structured or sub-array dtypes) and whose declared size matches the bytes stored (checked
    before any data is allocated). Loaded with ``allow_pickle=False``.

    Args:
        path: the file.
        kinds: accepted ``dtype.kind`` letters (``"biuf"``; the child also allows ``"U"``
            for the strings of an encoded case).
        max_array_bytes: refuse a member whose data is larger.
        max_file_bytes: refuse a file larger than this (default: what the bounds above allow).
        max_total_bytes: refuse members that declare more than this in total (bytes of data);
            the parent passes the size of the expected outputs plus slack.
        max_members: refuse a file with more members.

    Raises:
        BadArrayFile: with a readable reason.
    """
    path = Path(path)
    budget = max_array_bytes * max_members if max_total_bytes is None else max_total_bytes
    if max_file_bytes is None:
        max_file_bytes = budget + max_members * (NPY_HEADER_SLACK + 1024) + 65536
    try:
        fh, _size = open_regular(path, max_file_bytes)
    except FileNotFoundError as exc:
        raise BadArrayFile(f"cannot read {path.name}: no such file") from exc
    out: dict[str, np.ndarray] = {}
    try:
        with fh, zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                raise BadArrayFile(f"{path.name} holds {len(infos)} arrays (at most {max_members})")
            declared = 0
            for info in infos:
                if info.compress_type not in ALLOWED_COMPRESSION:
                    raise BadArrayFile(
                        f"{path.name}: member {info.filename!r} uses compression method "
                        f"{info.compress_type} (only stored or deflated members are read)"
                    )
                if info.file_size > max_array_bytes + NPY_HEADER_SLACK:
                    raise BadArrayFile(
                        f"{path.name}: member {info.filename!r} declares {info.file_size} bytes "
                        f"(at most {max_array_bytes})"
                    )
                declared += info.file_size
            if declared > budget + len(infos) * NPY_HEADER_SLACK:
                raise BadArrayFile(
                    f"{path.name} declares {declared} bytes of arrays, more than the "
                    f"{budget} expected"
                )
            for info in infos:
                name = info.filename
                if not name.endswith(".npy") or info.is_dir():
                    raise BadArrayFile(f"{path.name}: unexpected member {name!r}")
                key = name[: -len(".npy")]
                if key in out:
                    raise BadArrayFile(f"{path.name}: array {key!r} appears twice")
                with zf.open(info) as member:
                    try:
                        out[key] = _read_member(member, info.file_size, key, kinds)
                    except BadArrayFile:
                        raise
                    except Exception as exc:  # noqa: BLE001 - any oddity of hostile data
                        raise BadArrayFile(
                            f"{path.name}: array {key!r} is malformed "
                            f"({type(exc).__name__}: {exc})"[:300]
                        ) from exc
    except zipfile.BadZipFile as exc:
        raise BadArrayFile(f"{path.name} is not an .npz file: {exc}") from exc
    except NotImplementedError as exc:  # an unknown compression method
        raise BadArrayFile(f"{path.name}: {exc}") from exc
    except (ValueError, OSError, EOFError, RuntimeError, RecursionError, MemoryError) as exc:
        raise BadArrayFile(f"{path.name} is malformed: {exc}"[:300]) from exc  # header or data
    return out


def _read_member(fh: Any, stored: int, key: str, kinds: str) -> np.ndarray:
    version = npy_format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = npy_format.read_array_header_2_0(fh)
    else:
        raise BadArrayFile(f"array {key!r}: unsupported .npy version {version}")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise BadArrayFile(f"array {key!r} has dtype {dtype}: only plain numbers are accepted")
    if dtype.kind not in kinds:
        raise BadArrayFile(
            f"array {key!r} has dtype {dtype} (kind {dtype.kind!r}); only numeric arrays "
            "(bool, int, uint, float) are accepted"
        )
    if not isinstance(shape, tuple) or not all(
        type(n) is int and 0 <= n <= MAX_ARRAY_BYTES for n in shape
    ):  # numpy's header parser takes any literal: (True,), (-1,), (2**70,)
        raise BadArrayFile(f"array {key!r}: header declares the shape {shape!r:.80}")
    count = math.prod(shape)
    header_len = fh.tell()
    if count * dtype.itemsize != stored - header_len:
        raise BadArrayFile(
            f"array {key!r}: header says shape {shape} of {dtype} but "
            f"{stored - header_len} bytes are stored"
        )
    data = fh.read(count * dtype.itemsize)
    arr = np.frombuffer(data, dtype=dtype, count=count).copy()
    arr = arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)
    if type(arr) is not np.ndarray:  # cannot happen, checked for the record
        raise BadArrayFile(f"array {key!r} is not a plain ndarray")
    return arr
