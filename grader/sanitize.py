"""Text hygiene for everything a report carries from student code (SECURITY.md case 38).

Student code controls its printed output, its exception messages and, through file and folder
names, its student id. Every report that carries them goes through these functions first:

* :func:`clean_text`: ANSI/VT escape sequences removed; ``\\r\\n`` and lone ``\\r`` become
  ``\\n`` (Gradescope asks for Unix line endings); every other C0 control character and DEL
  becomes its visible Unicode "control picture" (NUL → ``␀``, ESC → ``␛``), C1 controls, lone
  surrogates and the non-characters U+FFFE/U+FFFF become U+FFFD; bidirectional controls and
  zero-width spaces become visible (``<U+202E>``), so no id or output reads reversed. The
  result is valid in JSON (any parser, also the strict ones that reject lone surrogates), in
  XML 1.0 (whose ``Char`` production allows only tab, newline and carriage return below
  U+0020) and in a terminal.
* :func:`truncate` and :func:`fit_json`: cut long text with a visible marker that says how much
  was cut, and bring a JSON document under a byte budget by cutting its longest strings, so the
  document stays valid JSON.
* :func:`csv_cell`: OWASP's advice against CSV injection (formula injection): a text cell that
  starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return (also a line feed, and the
  full-width forms of the four signs) is prefixed with a single quote, so a spreadsheet shows it
  as text instead of running it.
* :func:`md_text` and :func:`md_code_block`: student text in Markdown is escaped, and a code
  block's fence is longer than any backtick run inside it, so student output cannot close the
  block and inject links, images or HTML.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "CUT_MARKER",
    "clean_doc",
    "clean_text",
    "csv_cell",
    "fit_json",
    "md_code_block",
    "md_text",
    "truncate",
]

#: ANSI/VT escape sequences: CSI (``ESC [`` … final byte, also the 8-bit CSI U+009B), OSC
#: (``ESC ]`` … BEL or ``ESC \\``, also unterminated), DCS/SOS/PM/APC strings, and the
#: two-byte ``ESC`` + one character sequences.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|$)"  # OSC
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c|$)"  # DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]"  # nF / Fp / Fe / Fs escape sequences
)
_NEWLINES = re.compile(r"\r\n?")
#: C0 controls except tab and newline, and DEL: shown as their control pictures.
_C0 = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: C1 controls, lone surrogates, U+FFFE and U+FFFF: replaced by U+FFFD.
_BAD = re.compile(r"[\x80-\x9f\ud800-\udfff\ufffe\uffff]")
#: Invisible characters that change how the text around them is shown: the Unicode
#: bidirectional controls (embeddings, overrides, isolates, marks; the "Trojan Source" attack,
#: CVE-2021-42574) and zero-width spaces/no-break spaces. Shown as ``<U+202E>``. The zero-width
#: (non-)joiners stay: Persian, Indic scripts and emoji sequences need them.
_INVISIBLE = re.compile(r"[\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")
#: Cells a spreadsheet may take for a formula (OWASP "CSV Injection"), plus full-width forms.
_CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
#: ASCII punctuation that Markdown (CommonMark) may read as syntax; all may be backslash-escaped.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&\"'=:])")
#: Shown where text was cut; ``{n}`` is the number of characters (or bytes) removed.
CUT_MARKER = "\n[… {n} {unit} cut …]\n"


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\u2421" if code == 0x7F else chr(0x2400 + code)


def clean_text(text: object) -> str:
    """``text`` (a ``str``, or ``bytes`` decoded as UTF-8 with replacement) made safe for
    JSON, XML 1.0, Markdown code blocks, CSV and terminals (see the module docstring)."""
    if text is None:
        return ""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    text = _ANSI.sub("", text)
    text = _NEWLINES.sub("\n", text)
    text = _C0.sub(_picture, text)
    text = _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)
    return _BAD.sub("\ufffd", text)


def clean_doc(doc: Any) -> Any:
    """A copy of a JSON-like ``doc`` with every string (keys too) passed through
    :func:`clean_text`; numbers, booleans and ``None`` are kept."""
    if isinstance(doc, str):
        return clean_text(doc)
    if isinstance(doc, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_doc(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [clean_doc(v) for v in doc]
    return doc


def truncate(text: str, limit: int, *, unit: str = "characters") -> str:
    """``text`` cut to at most ``limit`` characters (``unit="bytes"``: UTF-8 bytes), keeping
    its beginning (two thirds) and its end (a third, where a traceback ends) around a marker
    that says how much was cut. Text within the limit is returned unchanged.

    Raises:
        ValueError: ``limit`` is too small to hold the marker, or ``unit`` is unknown.
    """
    if unit not in ("characters", "bytes"):
        raise ValueError(f"unit must be 'characters' or 'bytes', got {unit!r}")

    def size(s: str) -> int:
        return len(s.encode("utf-8")) if unit == "bytes" else len(s)

    total = size(text)
    if total <= limit:
        return text
    room = limit - size(CUT_MARKER.format(n=total, unit=unit))
    if room < 16:
        raise ValueError(f"limit {limit} is too small to cut text with a marker")
    head_room, tail_room = room * 2 // 3, room - room * 2 // 3
    if unit == "characters":
        head, tail = text[:head_room], text[len(text) - tail_room :]
    else:
        data = text.encode("utf-8")
        head = data[:head_room].decode("utf-8", errors="ignore")
        tail = data[len(data) - tail_room :].decode("utf-8", errors="ignore")
    cut = total - size(head) - size(tail)
    return head + CUT_MARKER.format(n=cut, unit=unit) + tail


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _strings(doc: Any, path: tuple = ()) -> list[tuple[int, tuple]]:
    found: list[tuple[int, tuple]] = []
    if isinstance(doc, str):
        found.append((len(doc.encode("utf-8")), path))
    elif isinstance(doc, dict):
        for k, v in doc.items():
            found += _strings(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _strings(v, (*path, i))
    return found


def _set(doc: Any, path: tuple, value: str) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def fit_json(doc: Any, max_bytes: int) -> Any:
    """``doc`` (cleaned by :func:`clean_doc`) with its longest strings cut by :func:`truncate`
    until ``json.dumps(doc, indent=2)`` takes at most ``max_bytes`` bytes of UTF-8.

    Only string values shrink: keys, numbers and the structure stay, so the result is the same
    document with shorter texts, and always valid JSON.

    Raises:
        ValueError: the document does not fit even with every string cut short.
    """
    doc = clean_doc(doc)
    for _round in range(64):
        size = len(_dumps(doc))
        if size <= max_bytes:
            return doc
        excess = size - max_bytes
        strings = sorted(_strings(doc), key=lambda t: t[0], reverse=True)
        strings = [s for s in strings if s[0] > 200]
        if not strings:
            break
        # share the cut among the longest strings, in proportion to their length
        longest = strings[: max(1, min(len(strings), 8))]
        pool = sum(n for n, _ in longest)
        for n, path in longest:
            share = excess * n // pool + 64  # JSON escapes make a char cost up to 6 bytes
            target = max(200, n - share)
            _set(doc, path, truncate(_get(doc, path), target, unit="bytes"))
    if len(_dumps(doc)) <= max_bytes:
        return doc
    raise ValueError(f"the document does not fit in {max_bytes} bytes even with every text cut")


def csv_cell(value: object) -> object:
    """A spreadsheet-safe CSV cell: text cleaned, and prefixed with ``'`` when it starts with a
    character that makes a spreadsheet evaluate it (OWASP "CSV Injection"); numbers and
    ``None`` are returned as they are. Strip the leading ``'`` to get the original text."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = clean_text(value)
    if text.startswith(_CSV_TRIGGERS) or text.startswith("'"):
        return "'" + text
    return text


def md_text(text: object) -> str:
    """Student text as Markdown that renders literally: cleaned, every Markdown-significant
    ASCII punctuation character backslash-escaped (CommonMark allows escaping any of them),
    line breaks kept as hard breaks."""
    lines = clean_text(text).split("\n")
    return "  \n".join(_MD_SPECIAL.sub(r"\\\1", line) for line in lines)


def md_code_block(text: object, info: str = "text") -> str:
    """``text`` as a fenced code block whose fence is longer than any run of backticks in it
    (CommonMark: a block closes only at a fence at least as long as its opening one)."""
    body = clean_text(text)
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"
