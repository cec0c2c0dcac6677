"""cnnlab's grader: exercise registry, sandboxed runs, comparison, results, generation, CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cnnlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
