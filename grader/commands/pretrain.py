"""`cnnlab pretrain`: train the small source-task backbone and write its checkpoint."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from grader.commands._common import translate_errors
from grader.errors import ConfigError

#: Where `cnnlab pretrain` writes without --out: a folder in the current directory. Not the
#: shipped checkpoint (in a wheel install it sits in site-packages, in a checkout it is a
#: committed file the exercises and tests are measured against), and not a hidden per-user
#: data folder: the user sees the file where they work and passes it on (e.g. to
#: ``transfer.load_pretrained(path)``); the repository's .gitignore ignores it.
DEFAULT_DIR = "pretrained"


@click.command("pretrain")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint to write (.pt; a .json with seed/epochs/accuracy goes beside it). "
    f"Default: ./{DEFAULT_DIR}/small_cnn_source.pt in the current folder (never the shipped "
    "checkpoint; pass its path explicitly to replace it).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Data, init and shuffling seed.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=12,
    show_default=True,
    help="Epochs, each on fresh source images.",
)
@click.option(
    "--per-class",
    "n_per_class",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Source images per class and epoch.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="CPU threads (fixed for reproducibility).",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, mps or auto.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@translate_errors
def pretrain(
    out: Path | None,
    seed: int,
    epochs: int,
    n_per_class: int,
    threads: int,
    device: str,
    quiet: bool,
) -> None:
    """Pretrain the small CNN backbone on the offline source task (8 procedural shapes).

    Writes a state_dict checkpoint atomically (load it with torch.load(..., weights_only=True)
    or cnnref.transfer.load_pretrained) and a JSON beside it, and prints the source-task
    accuracy on a fresh test split. The same seed reproduces the same checkpoint on CPU.
    About 2-3 minutes on 2 CPU cores. Without --out it writes ./pretrained/small_cnn_source.pt
    (created in the current folder); the checkpoint shipped with cnnlab is replaced only when
    --out names it.

    \b
    Example:
      cnnlab pretrain                                # ./pretrained/small_cnn_source.pt
      cnnlab pretrain --out my_checkpoint.pt --seed 0
      cnnlab pretrain --epochs 3 --out /tmp/quick.pt --quiet
    """
    from cnnref import train, transfer

    if out is None:
        target = Path(DEFAULT_DIR) / transfer.checkpoint_path().name
        target.parent.mkdir(parents=True, exist_ok=True)
    else:
        target = out
    if target.suffix != ".pt":
        raise ConfigError(f"--out must name a .pt file, got {str(target)!r}")
    if not target.parent.is_dir():
        raise ConfigError(
            f"folder {str(target.parent)!r} does not exist; create it or choose another --out"
        )
    command = (
        "cnnlab " + shlex.join(["pretrain", *sys.argv[2:]])
        if sys.argv[1:2] == ["pretrain"]
        else None
    )
    try:
        result = train.pretrain(
            seed=seed,
            epochs=epochs,
            n_per_class=n_per_class,
            threads=threads,
            device=device,
            out=target,
            progress=not quiet,
            command=command
            or f"cnnlab pretrain --seed {seed} --epochs {epochs} --per-class {n_per_class} "
            f"--out {target}",
        )
    except (ValueError, train.DeviceUnavailableError) as exc:
        raise ConfigError(str(exc)) from exc
    tested = result.metadata["source_test_images"]
    click.echo(
        f"source-task accuracy {result.source_accuracy:.1%} on {tested} fresh test images "
        f"after {epochs} epochs ({result.fit.seconds:.0f} s on {result.fit.device})"
    )
    click.echo(f"wrote {target} and {target.with_suffix('.json')}")
