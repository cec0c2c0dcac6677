"""Making what students get: generation (stubs, solutions, notebooks), the student bundle,
public check cases and the nbgrader bridge that generated notebooks' check cells call."""
