"""Exercise specs, one module per lecture topic; importing this package registers them all.

The registry keeps registration order, which is the exercise-number order of ``TOPICS``:
add a new topic module to ``TOPICS`` at its place in the lecture.
"""

from __future__ import annotations

import importlib

TOPICS = (
    "shapes",
    "params",
    "layers",
    "pooling",
    "receptive",
    "saliency",
    "transfer",
    "architectures",
    "questions",
)

for _topic in TOPICS:
    importlib.import_module(f"grader.exercises.{_topic}")
