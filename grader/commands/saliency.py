"""`cnnlab saliency`: a PNG grid of image / saliency / overlay from the shipped checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from grader.commands._common import translate_errors
from grader.errors import ConfigError


@click.command("saliency")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("saliency.png"),
    show_default=True,
    help="PNG file to write (written atomically).",
)
@click.option(
    "--task",
    type=click.Choice(["source", "target"]),
    default="source",
    show_default=True,
    help="Images of the source task (the checkpoint's own classes) or the target task "
    "(new classes: the map then explains the source class the model predicts).",
)
@click.option(
    "-n",
    "--images",
    "count",
    type=click.IntRange(1, 16),
    default=6,
    show_default=True,
    help="Rows of the grid.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Which images are drawn.",
)
@click.option(
    "--reduce",
    type=click.Choice(["max", "mean"]),
    default="max",
    show_default=True,
    help="How |gradient| is reduced over the colour channels.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A checkpoint from `cnnlab pretrain` (default: the shipped one).",
)
@translate_errors
def saliency(
    out: Path, task: str, count: int, seed: int, reduce: str, checkpoint: Path | None
) -> None:
    """Draw saliency maps of the pretrained model: image, saliency and overlay per row.

    The map is |d logit / d pixel| of the predicted class (logits, not softmax), reduced over
    the colour channels. Each row is labelled with the true class and the prediction; the
    share of saliency inside the object mask is printed.

    \b
    Example:
      cnnlab saliency --out grid.png
      cnnlab saliency --task target -n 4 --reduce mean --out target.png
    """
    import torch

    from cnnref import data, transfer
    from cnnref import saliency as sal

    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must name a .png file, got {str(out)!r}")
    from grader.render import check_report_path

    check_report_path(out, "--out")  # before the model runs
    if not out.parent.is_dir():
        raise ConfigError(
            f"folder {str(out.parent)!r} does not exist; create it or choose another --out"
        )
    try:
        model = transfer.load_pretrained(checkpoint)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from exc
    if task == "source":
        ds = data.source_task(n_per_class=max(1, (count + 7) // 8), seed=seed, split="val")
    else:
        ds = data.target_task(shots=1, n_test_per_class=max(1, (count + 4) // 5), seed=seed).test
    images, labels, masks = ds.images[:count], ds.labels[:count], ds.masks[:count]
    classes = data.SOURCE_CLASSES
    with torch.no_grad():
        probs = model(images).softmax(1)
    predicted = probs.argmax(1)
    maps = sal.saliency_map(model, images, predicted, reduce=reduce)
    share = sal.saliency_mask_share(maps, masks)
    titles = [
        f"{ds.class_names[int(y)]} -> {classes[int(p)]} ({float(probs[i, p]):.2f})"
        for i, (y, p) in enumerate(zip(labels, predicted, strict=True))
    ]
    sal.save_saliency_grid(out, images, maps, titles=titles)
    click.echo(
        f"wrote {out}: {count} {task}-task images; saliency inside the object "
        f"{float(share.mean()):.0%} vs object area {float(masks.float().mean()):.0%}"
    )
