"""cnnref: the reference implementations behind every cnnlab exercise.

Pure functions and torch modules; no grading logic and no I/O. The numpy half works on
NCHW float64 arrays; the torch half (``architectures``, ``saliency``, ``transfer``, ``data``)
on torch tensors.
"""

__version__ = "0.1.0"
