"""The procedural data: deterministic, masks agree with pixels, tasks as promised."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from cnnref import data


def test_deterministic_per_seed_and_split():
    a = data.source_task(n_per_class=20, seed=3)
    b = data.source_task(n_per_class=20, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.masks, b.masks)
    c = data.source_task(n_per_class=20, seed=4)
    test = data.source_task(n_per_class=20, seed=3, split="test")
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.images, test.images)


def test_shapes_dtypes_ranges_and_balance():
    ds = data.source_task(n_per_class=30, seed=0, size=48)
    assert ds.images.shape == (240, 3, 48, 48) and ds.images.dtype == torch.float32
    assert ds.masks.shape == (240, 48, 48) and ds.masks.dtype == torch.bool
    assert ds.labels.dtype == torch.int64
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    assert torch.bincount(ds.labels).tolist() == [30] * 8
    assert ds.class_names == data.SOURCE_CLASSES
    # every object is visible and inside the image, and covers a sensible share of it
    share = ds.masks.float().mean((1, 2))
    assert float(share.min()) > 0.02 and float(share.max()) < 0.5


def test_target_is_new_classes_few_shots():
    task = data.target_task(shots=7, n_test_per_class=11, seed=1)
    assert set(task.train.class_names).isdisjoint(data.SOURCE_CLASSES)
    assert torch.bincount(task.train.labels).tolist() == [7] * 5
    assert torch.bincount(task.test.labels).tolist() == [11] * 5
    assert not torch.equal(task.train.images[:5], task.test.images[:5])


def test_mask_marks_the_object_pixels():
    # with no noise, pixels inside the mask differ in colour from the background
    labels = np.zeros(50, dtype=np.int64)
    ds = data.render(["square"], labels, seed=0, noise=(0.0, 0.0))
    for image, mask in zip(ds.images, ds.masks, strict=True):
        inside = image[:, mask].mean(1)
        corner = image[:, 0, 0]
        assert float((inside - corner).abs().max()) > 0.1


def test_hollow_shapes_have_holes():
    labels = np.zeros(20, dtype=np.int64)
    ring = data.render(["ring"], labels, seed=0)
    disc = data.render(["circle"], labels, seed=0)
    # same random geometry (same seed): the ring is the disc minus its centre
    assert bool((ring.masks <= disc.masks).all())
    assert int(ring.masks.sum()) < int(disc.masks.sum())


def test_fast():
    start = time.perf_counter()
    data.source_task(n_per_class=250, seed=0)  # 2000 images
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: data.render(["hexagram"], np.zeros(2, int), seed=0), "unknown shape"),
        (lambda: data.render(["circle"], np.array([1]), seed=0), "indices"),
        (lambda: data.render(["circle"], np.zeros(2, int), seed=0, size=8), "at least 16"),
        (lambda: data.source_task(split="dev"), "split"),
        (lambda: data.source_task(seed=-1), "non-negative"),
        (lambda: data.target_task(shots=0), "at least 1"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
