"""`cnnlab doctor`: which isolation layers hold on this machine, found by trying them.

It starts the sandbox as grading would: its fork server tries every layer in a throw-away
child (namespaces, private mounts, capability drop, Landlock, seccomp). Then a probe
submission attacks the main guarantees through a real run with the audit hook off (as after
a student disabled it): reading a file outside the allow-list, leaving the session, naming
a process outside the run. Each layer is shown as holding, missing (with why) or switched off.

Exit status: 0 every layer this machine could have holds and was verified; 1 the sandbox is
weak (no filesystem layer: grading for credit needs ``--allow-weak-sandbox``), or a verified
attack got through; 3 the sandbox could not run at all.
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from pathlib import Path

import click

from grader.commands._common import EXIT_FAILED, EXIT_GRADER, EXIT_OK, translate_errors

PROBE = textwrap.dedent(
    """
    import errno, os

    def _r(fn):
        try:
            fn()
            return "OK"
        except PermissionError as exc:
            return "HOOK" if exc.errno is None else errno.errorcode.get(exc.errno, "?")
        except OSError as exc:
            return errno.errorcode.get(exc.errno, "?")

    def doctor_probe(canary, outsider):
        return [
            _r(lambda: open(canary, "rb").read()) == "EACCES",
            _r(os.setsid) == "EPERM",
            os.getpid() == 2,
            _r(lambda: os.kill(outsider, 0)) in ("ESRCH", "EPERM"),
        ]
    """
)
#: What each probe answer verifies.
VERIFIED = ("landlock", "seccomp", "pid_ns", "pid_ns")


@click.command("doctor")
@translate_errors
def doctor() -> None:
    """Show which sandbox layers hold on this machine (tried for real, not guessed).

    Grading for credit (`cnnlab batch`, the Gradescope autograder) refuses to start without
    the filesystem layer unless given --allow-weak-sandbox; `cnnlab grade` runs with what
    there is. docs/security.md says what each layer enforces.

    Exit status: 0 all is well, 1 the sandbox is weak here, 3 it cannot run at all.

    \b
    Example:
      cnnlab doctor
    """
    from rich.console import Console
    from rich.table import Table

    from grader.errors import GraderFailure
    from grader.sandbox.layers import DESCRIPTIONS, FILESYSTEM_LAYERS, LAYERS, Plan
    from grader.sandbox.runner import Limits, Sandbox
    from grader.submission import load_submission

    console = Console()
    verified: dict[str, bool] = {}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="cnnlab-doctor-", dir=_outside_tmp()) as scratch,
            Sandbox(Limits(wall_s=30, cpu_s=30), layers_off={"audit"}) as bare,
        ):
            # the audit hook is left out of the probe run only (a copy: the run checks its own)
            plan = Plan.from_json(json.loads(json.dumps(bare.plan.to_json())))
            plan.on["audit"] = True
            plan.why_not.pop("audit", None)
            memory = bare.memory.describe()
            canary = Path(scratch) / "canary.txt"
            canary.write_text("if you can read this, the filesystem layer is missing")
            probe = Path(scratch) / "probe"
            probe.mkdir()
            (probe / "doctor_probe.py").write_text(PROBE)
            import os

            outcome = bare.run(
                load_submission(probe),
                harness="call",
                function="doctor_probe",
                cases=[{"canary": str(canary), "outsider": os.getppid() or 1}],
            )
            case = outcome.cases[0]
            if case.status == "ok" and case.outputs is not None:
                answers = [bool(v) for v in case.outputs["out"].tolist()]
                for layer, good in zip(VERIFIED, answers, strict=True):
                    verified[layer] = verified.get(layer, True) and good
    except GraderFailure as exc:
        console.print(f"[red]the sandbox cannot run here:[/red] {exc}")
        sys.exit(EXIT_GRADER)

    table = Table(title="cnnlab sandbox layers on this machine")
    table.add_column("layer")
    table.add_column("what it does")
    table.add_column("state")
    failed_attack = False
    for layer in LAYERS:
        if plan.has(layer):
            state = "[green]holds[/green]"
            if layer in verified:
                if verified[layer]:
                    state += " (attack refused)"
                else:
                    state = "[red]in place, but the attack got through[/red]"
                    failed_attack = True
        else:
            reason = plan.why_not.get(layer, "not available")
            colour = "red" if layer == "landlock" else "yellow"
            state = f"[{colour}]missing[/{colour}]: {reason}"
        table.add_row(layer, DESCRIPTIONS[layer], state)
    console.print(table)
    console.print(f"memory: {memory}")
    if not any(plan.has(layer) for layer in FILESYSTEM_LAYERS):
        console.print(
            "[red]weak sandbox:[/red] without the filesystem layer a determined student can "
            "read the reference and classmates' files. `cnnlab batch` and the Gradescope "
            "autograder refuse to grade for credit unless given --allow-weak-sandbox."
        )
        sys.exit(EXIT_FAILED)
    if failed_attack:
        sys.exit(EXIT_FAILED)
    console.print("[green]every layer this machine supports is in place[/green]")
    sys.exit(EXIT_OK)


def _outside_tmp() -> str | None:
    """A scratch folder outside /tmp (the private mounts hide /tmp, which would make the
    filesystem probe pass for the wrong reason)."""
    import os

    home = Path(os.path.expanduser("~")) / ".cache"
    try:
        home.mkdir(parents=True, exist_ok=True)
        return str(home)
    except OSError:
        return None
