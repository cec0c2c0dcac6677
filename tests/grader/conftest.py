"""Fixtures shared by the tests of grader/: ``plugin_site`` installs exercise plugins."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugin_support import PluginSite

from grader import plugins, registry
from grader.problemset import generate


@pytest.fixture
def plugin_site(tmp_path: Path) -> Iterator[PluginSite]:
    """A :class:`plugin_support.PluginSite`; everything it installed is gone afterwards."""
    root = tmp_path / "site-packages"
    root.mkdir()
    sys.path.insert(0, str(root))
    site = PluginSite(root)
    try:
        yield site
    finally:
        sys.path.remove(str(root))
        for name in list(sys.modules):
            if name.split(".")[0] in site.packages:
                del sys.modules[name]
        sys.path_importer_cache.clear()
        generate._INDEX_CACHE.clear()
        plugins.refresh()
        registry.reload_plugins()
