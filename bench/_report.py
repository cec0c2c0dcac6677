"""Write one benchmark's section of BENCHMARKS.md, leaving the other sections as they are.

Each benchmark owns the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Every figure is a ratio against the alternative measured in the same run. Regenerate a\n"
    "section with the command shown under it.\n"
)


def machine() -> str:
    """One line describing where the numbers were taken."""
    import torch

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}"
    )


def write_section(name: str, body: str) -> Path:
    """Replace (or append) the section ``name`` of BENCHMARKS.md with ``body``."""
    text = REPORT.read_text() if REPORT.exists() else HEADER
    block = f"<!-- bench:{name} -->\n{body.rstrip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = REPORT.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(REPORT)
    return REPORT
