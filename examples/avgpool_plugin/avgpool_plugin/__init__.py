"""Average pooling, forward and backward: an instructor's own cnnlab exercises.

``reference.py`` holds the reference implementation (the single source the stubs, solutions
and notebooks are generated from); ``spec.py`` the two ``ExerciseSpec``s: cases, reference
outputs, known mistakes. The entry point ``cnnlab.exercises`` in ``pyproject.toml`` registers
them. Students never receive this package: ``cnnlab release`` ships only the generated stubs
and public check cases, and the grading sandbox cannot read it.
"""
