"""Transfer learning on the offline target task: scratch vs frozen base vs discriminative
fine-tuning, same labelled images, accuracy and wall time side by side; plus the saliency
sanity numbers of the shipped checkpoint.

Run: ``python -m bench.bench_transfer`` (``--quick`` for a smoke run that writes nothing).
"""

from __future__ import annotations

import argparse
import time

import torch

from bench._report import machine, write_section
from cnnref import data, saliency, train, transfer
from cnnref.architectures import SmallCNN


def recipes(
    *, shots: int, seed: int, head_epochs: int, finetune_epochs: int, quick: bool, threads: int
) -> list[dict]:
    """The three recipes on the same target images; returns one row per recipe."""
    task = data.target_task(shots=shots, n_test_per_class=40 if quick else 300, seed=seed)
    x, y = task.train.images, task.train.labels
    common = {
        "batch_size": 16,
        "augment": True,
        "device": "cpu",
        "threads": threads,
        "progress": False,
        "seed": seed,
        "eval_data": (task.test.images, task.test.labels),
    }
    rows = []

    # 1. frozen base + new head
    start = time.perf_counter()
    model = transfer.load_pretrained()
    transfer.freeze(model)
    torch.manual_seed(seed)
    transfer.replace_head(model, len(task.train.class_names))
    frozen = train.fit(model, x, y, epochs=head_epochs, lr=1e-2, **common)
    frozen_seconds = time.perf_counter() - start
    rows.append(
        {
            "recipe": "frozen base + new head",
            "acc": frozen.eval_accuracy,
            "s": frozen_seconds,
            "epochs": head_epochs,
        }
    )

    # 2. then discriminative fine-tuning of every group (lr, lr/3, lr/9, lr/27), BN statistics kept
    start = time.perf_counter()
    transfer.unfreeze(model)
    groups = transfer.discriminative_param_groups(model.layer_groups(), 1e-3, factor=3.0)
    tuned = train.fit(
        model,
        x,
        y,
        epochs=finetune_epochs,
        param_groups=groups,
        lr=1e-3,
        batchnorm_eval=True,
        **common,
    )
    rows.append(
        {
            "recipe": "+ discriminative fine-tuning (f=3)",
            "acc": tuned.eval_accuracy,
            "s": frozen_seconds + time.perf_counter() - start,
            "epochs": head_epochs + finetune_epochs,
        }
    )

    # 3. from scratch, same images: 4x the epochs of the whole transfer pipeline, then the
    # same number (the gap is not a matter of budget); the last row is the reference
    for times, label in ((4, "from scratch (4x the epochs)"), (1, "from scratch (same epochs)")):
        start = time.perf_counter()
        torch.manual_seed(seed)
        scratch_model = SmallCNN(len(task.train.class_names))
        epochs = times * (head_epochs + finetune_epochs)
        scratch = train.fit(
            scratch_model, x, y, epochs=epochs, lr=3e-3, schedule="onecycle", **common
        )
        rows.append(
            {
                "recipe": label,
                "acc": scratch.eval_accuracy,
                "s": time.perf_counter() - start,
                "epochs": epochs,
            }
        )
    return rows


def saliency_sanity(*, n: int, seed: int) -> dict:
    """Mask share of saliency vs mask area, and trained-vs-randomized rank correlation."""
    model = transfer.load_pretrained()
    ds = data.source_task(n_per_class=max(1, n // 8), seed=seed, split="val")
    with torch.no_grad():
        predicted = model(ds.images).argmax(1)
    maps = saliency.saliency_map(model, ds.images, ds.labels)
    random_model = saliency.randomized_copy(model, seed=seed)
    random_maps = saliency.saliency_map(random_model, ds.images, ds.labels)
    # conv edge detectors answer on both sides of an edge: also count a 1-pixel border
    border = torch.nn.functional.max_pool2d(ds.masks[:, None].float(), 3, 1, 1)[:, 0] > 0
    return {
        "area_border": float(border.float().mean()),
        "share_border": float(saliency.saliency_mask_share(maps, border).mean()),
        "share_border_random": float(saliency.saliency_mask_share(random_maps, border).mean()),
        "images": len(ds),
        "accuracy": float((predicted == ds.labels).float().mean()),
        "area": float(ds.masks.float().mean()),
        "share": float(saliency.saliency_mask_share(maps, ds.masks).mean()),
        "share_random": float(saliency.saliency_mask_share(random_maps, ds.masks).mean()),
        "spearman": float(saliency.spearman_per_image(maps, random_maps).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny run, writes nothing")
    parser.add_argument("--shots", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="target-task seeds to average")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch CPU threads per training loop (use 1 on a machine shared with other jobs: "
        "two spinning OpenMP threads on two busy cores are many times slower)",
    )
    args = parser.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    epochs = (3, 2) if args.quick else (60, 20)
    per_seed = [
        recipes(
            shots=args.shots,
            seed=s,
            head_epochs=epochs[0],
            finetune_epochs=epochs[1],
            quick=args.quick,
            threads=args.threads,
        )
        for s in seeds
    ]
    sanity = saliency_sanity(n=16 if args.quick else 400, seed=0)
    info = transfer.pretrained_info()

    names = [r["recipe"] for r in per_seed[0]]
    tested = 200 if args.quick else 1500
    lines = [
        "## Transfer learning on the offline target task",
        "",
        f"Target task: 5 new shapes, {args.shots} labelled images per class "
        f"({5 * args.shots} in all), each seed tested on {tested} fresh images; mean over "
        f"target seeds {seeds}. Backbone: the shipped `small_cnn` checkpoint "
        f"(source accuracy {info['source_accuracy']:.1%}, `{info['command']}`). "
        f"CPU, {args.threads} torch thread(s) per loop; no GPU was lent to this issue, so there "
        "is no GPU column. Wall time includes loading the checkpoint; the fine-tuning row's "
        "time and epochs include the head training before it.",
        "",
        "| recipe | epochs | target accuracy | wall time | accuracy vs scratch |",
        "|---|---:|---:|---:|---:|",
    ]
    scratch_acc = sum(r[-1]["acc"] for r in per_seed) / len(per_seed)
    for i, name in enumerate(names):
        acc = sum(r[i]["acc"] for r in per_seed) / len(per_seed)
        sec = sum(r[i]["s"] for r in per_seed) / len(per_seed)
        spread = ", ".join(f"{r[i]['acc']:.1%}" for r in per_seed)
        lines.append(
            f"| {name} | {per_seed[0][i]['epochs']} | {acc:.1%} ({spread}) | {sec:.1f} s | "
            f"{acc - scratch_acc:+.1%} |"
        )
    lines += [
        "",
        "## Saliency sanity on the shipped checkpoint",
        "",
        f"{sanity['images']} source images (validation split, model accuracy "
        f"{sanity['accuracy']:.1%}); maps of the true class's logit, max over channels.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| object mask's share of the image | {sanity['area']:.1%} |",
        f"| share of saliency inside the mask, trained model | {sanity['share']:.1%} |",
        f"| ... re-initialised model | {sanity['share_random']:.1%} |",
        f"| mask grown by 1 pixel: share of the image | {sanity['area_border']:.1%} |",
        f"| ... share of saliency inside it, trained model | {sanity['share_border']:.1%} |",
        f"| ... re-initialised model | {sanity['share_border_random']:.1%} |",
        f"| Spearman rank correlation, trained vs re-initialised maps | {sanity['spearman']:.2f} |",
        "",
        f"Machine: {machine()}.",
        "",
        "Regenerate: `python -m bench.bench_transfer"
        + ("`" if args.threads == 2 else f" --threads {args.threads}`"),
    ]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_section("transfer", body)


if __name__ == "__main__":
    main()
