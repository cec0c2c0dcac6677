"""The README starts with the two commands, and .ci/run runs the second one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the same program as in .ci/run
AWK = r"/^```bash$/{inblock=1; n++; next} /^```$/{inblock=0; next} inblock && n==2 {print}"


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_starts_with_two_commands():
    text = (ROOT / "README.md").read_text()
    blocks = _blocks()
    assert len(blocks) >= 2
    # nothing but the title before the two commands
    head = text.split("```bash")[0].strip().splitlines()
    assert head == ["# cnnlab"]
    for b in blocks[:2]:
        assert b.startswith("pip install torch==2.13.0 && "), "torch's CPU build must come first"
    assert "cnnlab grade" in blocks[0]
    assert "pytest" in blocks[1]


def test_ci_runs_the_readme_test_command():
    script = ROOT / ".ci" / "run"
    out = subprocess.run(
        ["awk", AWK, str(ROOT / "README.md")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == _blocks()[1]
    assert AWK in script.read_text()
