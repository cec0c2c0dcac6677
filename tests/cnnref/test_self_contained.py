"""Every exercise function can be copied into a student solution on its own.

The generator copies the source of each public exercise function (and the same-module
helpers it uses) into student files that run where ``cnnref`` is not importable. So the
globals such a function reaches may only be builtins, numpy, or things defined in its own
module.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import types

import numpy as np
import pytest

EXERCISE_FUNCTIONS = [
    ("cnnref.shapes", "conv_output_size"),
    ("cnnref.shapes", "effective_kernel_size"),
    ("cnnref.params", "conv2d_params"),
    ("cnnref.params", "dense_params"),
    ("cnnref.params", "depthwise_separable_params"),
    ("cnnref.params", "conv2d_macs"),
    ("cnnref.params", "depthwise_separable_macs"),
    ("cnnref.layers", "conv2d_forward"),
    ("cnnref.layers", "conv2d_backward"),
    ("cnnref.layers", "dense_forward"),
    ("cnnref.layers", "dense_backward"),
    ("cnnref.layers", "relu_forward"),
    ("cnnref.layers", "relu_backward"),
    ("cnnref.pooling", "maxpool2d_forward"),
    ("cnnref.pooling", "maxpool2d_backward"),
    ("cnnref.pooling", "avgpool2d_forward"),
    ("cnnref.pooling", "avgpool2d_backward"),
    ("cnnref.receptive", "receptive_field"),
]


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _outside_references(module, fn, seen: set[str]) -> list[str]:
    problems = []
    for name in sorted(_names(fn.__code__)):
        if name in seen or name not in vars(module):
            continue  # attribute names (x.shape) and builtins are not module globals
        seen.add(name)
        value = vars(module)[name]
        if value is np:
            continue
        if getattr(value, "__module__", None) == module.__name__:
            if inspect.isfunction(value):
                problems += _outside_references(module, value, seen)
            continue
        if isinstance(value, (int, float, str, tuple, frozenset)):
            continue
        problems.append(f"{fn.__name__} uses {name} = {value!r} from outside {module.__name__}")
    return problems


@pytest.mark.parametrize("module_name, function", EXERCISE_FUNCTIONS)
def test_exercise_function_reaches_only_numpy_builtins_and_its_own_module(module_name, function):
    module = importlib.import_module(module_name)
    fn = getattr(module, function)
    assert _outside_references(module, fn, set(dir(builtins))) == []


def test_the_check_can_fail():
    fake = types.ModuleType("fake")
    exec("import os\ndef f():\n    return os.getcwd()\n", vars(fake))
    assert _outside_references(fake, fake.f, set()) != []
