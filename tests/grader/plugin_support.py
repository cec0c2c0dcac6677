"""Installing exercise plugins in-process for tests: a temporary site folder on ``sys.path``
holding packages and their ``.dist-info`` (METADATA, entry_points.txt, top_level.txt, RECORD),
which ``importlib.metadata`` finds exactly like an installed distribution.

The stronger proof, a real virtual environment with the plugin ``pip install``ed, is
``tests/grader/test_plugin_venv.py``; this fixture keeps the many small cases fast.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from grader import registry
from grader.problemset import generate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AVGPOOL_EXAMPLE = EXAMPLES / "avgpool_plugin"


class PluginSite:
    """A folder on ``sys.path`` that plugins are "installed" into."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.packages: list[str] = []

    def install(
        self,
        distribution: str,
        files: Mapping[str, str],
        entry_points: Mapping[str, str],
        *,
        version: str = "0.1.0",
        top_level: list[str] | None = None,
    ) -> None:
        """Write ``files`` (relative path -> text) and a dist-info declaring ``entry_points``
        (name -> "module:attr") in the group ``cnnlab.exercises``; reload the plugins."""
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self._dist_info(distribution, version, list(files), entry_points, top_level)
        self.reload()

    def install_folder(self, distribution: str, source: Path, package: str, entry_points) -> None:
        """Copy the package folder ``source/package`` in and declare ``entry_points``."""
        shutil.copytree(source / package, self.root / package, dirs_exist_ok=True)
        files = [p.relative_to(self.root).as_posix() for p in (self.root / package).rglob("*.py")]
        self._dist_info(distribution, "0.1.0", files, entry_points, [package])
        self.reload()

    def _dist_info(self, distribution, version, files, entry_points, top_level) -> None:
        tops = top_level or sorted({f.split("/")[0].removesuffix(".py") for f in files})
        self.packages += [t for t in tops if t not in self.packages]
        info = self.root / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        lines = ["[cnnlab.exercises]", *(f"{k} = {v}" for k, v in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        (info / "top_level.txt").write_text("\n".join(tops) + "\n")
        (info / "RECORD").write_text("\n".join(f"{f},," for f in files) + "\n")

    def reload(self) -> None:
        for name in list(sys.modules):
            if name.split(".")[0] in self.packages:
                del sys.modules[name]
        sys.path_importer_cache.clear()
        generate._INDEX_CACHE.clear()  # module sources the generator read
        registry.reload_plugins()


def install_avgpool(site: PluginSite) -> None:
    """The example plugin of ``examples/avgpool_plugin`` (two exercises, one entry point)."""
    site.install_folder(
        "cnnlab-avgpool",
        AVGPOOL_EXAMPLE,
        "avgpool_plugin",
        {"avgpool2d": "avgpool_plugin.spec:EXERCISES"},
    )
