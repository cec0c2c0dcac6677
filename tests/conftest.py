"""Shared pytest configuration: Hypothesis profiles.

``ci`` (the default) keeps the whole suite well under ten minutes on two cores; ``dev`` draws
more examples for a local soak. Choose one with ``HYPOTHESIS_PROFILE=dev pytest ...``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=300, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def autograder(tmp_path_factory):
    """``(source folder, python of a fresh venv)``: the exported Gradescope autograder, set up
    once per session (see ``tests/wheel_support.py``)."""
    from wheel_support import exported_autograder

    return exported_autograder(tmp_path_factory.mktemp("gradescope"))
