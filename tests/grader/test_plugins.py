"""Exercise plugins (entry point group ``cnnlab.exercises``): loading, the self-check, broken
plugins reported with their names while the built-in exercises keep working."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
from click.testing import CliRunner
from plugin_support import install_avgpool

from grader import authoring, registry
from grader.cli import main
from grader.problemset.generate import render_problem_set

REFERENCE = '''
"""Reference of the demo plugin."""

import numpy as np


def leaky_relu(x: np.ndarray, *, slope: float = 0.1) -> np.ndarray:
    """Leaky ReLU: ``x`` where positive, ``slope * x`` elsewhere.

    Args:
        x: input, any shape.
        slope: the negative side's slope.

    Returns:
        out, the shape of ``x``.
    """
    return np.where(x > 0, x, slope * x)
'''

SPEC = """
import numpy as np

from demo_plugin import reference
from grader.authoring import case
from grader.registry import ExerciseSpec, Mistake


def cases(rng):
    return [case("mixed signs", x=rng.standard_normal((2, 5)), slope=0.1)]


def _mistake(c):
    return {{"out": np.maximum(c["x"], 0.0)}}


SPEC = ExerciseSpec(
    name={name!r},
    number={number!r},
    topic={topic!r},
    title="Leaky ReLU",
    points=2,
    function="leaky_relu",
    harness={harness!r},
    make_cases={make_cases},
    reference=lambda c: {{"out": reference.leaky_relu(c["x"], slope=c["slope"])}},
    reference_function=reference.leaky_relu,
    mistakes=(Mistake("slope_forgotten", "negative side set to 0: multiply by slope", {mistake}),),
    {extra}
)
"""


def demo_files(**overrides) -> dict[str, str]:
    fields = {
        "name": "leaky_relu",
        "number": "3.9",
        "topic": "layers",
        "harness": "call",
        "make_cases": "cases",
        "mistake": "_mistake",
        "extra": "",
    }
    fields.update(overrides)
    return {
        "demo_plugin/__init__.py": "",
        "demo_plugin/reference.py": REFERENCE,
        "demo_plugin/spec.py": SPEC.format(**fields),
    }


def install_demo(site, distribution="cnnlab-demo", **overrides) -> None:
    site.install(distribution, demo_files(**overrides), {"leaky": "demo_plugin.spec:SPEC"})


def test_a_plugin_exercise_is_registered_after_the_built_in_ones(plugin_site):
    builtin = registry.names()
    install_demo(plugin_site)
    assert registry.names() == [*builtin, "leaky_relu"]
    source = registry.origin("leaky_relu")
    assert source is not None and source.distribution == "cnnlab-demo"
    assert source.packages == ("demo_plugin",)
    assert registry.origin("conv2d_forward") is None and registry.is_builtin("conv2d_forward")
    assert registry.plugin_problems() == []


def test_cnnlab_list_shows_the_plugin_exercise_and_its_distribution(plugin_site):
    install_demo(plugin_site)
    result = CliRunner().invoke(main, ["list", "--topic", "layers"])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if "leaky_relu" in ln)
    assert "3.9" in line and "[plugin cnnlab-demo]" in line


def test_generation_puts_the_plugin_exercise_into_its_topic_module(plugin_site):
    install_demo(plugin_site)
    files = render_problem_set(seed=3, notebooks=True)
    stub, solution = files["exercises/layers.py"], files["solutions/layers.py"]
    assert 'raise NotImplementedError("Exercise 3.9: leaky_relu")' in stub
    assert "return np.where(x > 0, x, slope * x)" in solution
    assert "return np.where" not in stub
    assert "demo_plugin" not in stub + solution  # nothing imports the plugin
    assert "leaky_relu" in files["exercises/notebooks/layers.ipynb"]
    compile(solution, "layers.py", "exec")


def test_the_example_plugin_is_generated_from_its_own_reference_module(plugin_site):
    install_avgpool(plugin_site)
    assert registry.plugin_problems() == []
    files = render_problem_set(seed=11, notebooks=False)
    stub, solution = files["exercises/pooling.py"], files["solutions/pooling.py"]
    for text in (stub, solution):
        assert "class AvgPoolCache(NamedTuple)" in text  # the type the signature uses
        assert "def maxpool2d_backward" in text and "def avgpool2d_backward" in text
        assert "avgpool_plugin" not in text
    assert 'raise NotImplementedError("Exercise 4.4: avgpool2d_backward")' in stub
    assert "dout[:, :, i, j, None, None] / p**2" in solution


@pytest.mark.parametrize(
    "files, expected",
    [
        (
            {"demo_plugin/__init__.py": "", "demo_plugin/spec.py": "import no_such_module\n"},
            "importing demo_plugin.spec:SPEC failed: ModuleNotFoundError",
        ),
        (
            {"demo_plugin/__init__.py": "", "demo_plugin/spec.py": "raise SystemExit(3)\n"},
            "importing demo_plugin.spec:SPEC failed: SystemExit",
        ),
        (
            {"demo_plugin/__init__.py": "", "demo_plugin/spec.py": "SPEC = 42\n"},
            "is a int; an entry point of 'cnnlab.exercises' must name an ExerciseSpec",
        ),
    ],
    ids=["import-error", "sys-exit", "not-a-spec"],
)
def test_a_plugin_that_cannot_be_loaded_is_reported_and_the_built_ins_stay(
    plugin_site, files, expected
):
    builtin = registry.names()
    plugin_site.install("cnnlab-demo", files, {"leaky": "demo_plugin.spec:SPEC"})
    assert registry.names() == builtin
    (problem,) = registry.plugin_problems()
    text = str(problem)
    assert "plugin 'leaky' (distribution cnnlab-demo 0.1.0" in text
    assert expected in text


def test_cnnlab_list_still_works_and_shows_a_broken_plugin(plugin_site):
    plugin_site.install(
        "cnnlab-broken",
        {"broken_plugin/__init__.py": "", "broken_plugin/spec.py": "1/0\n"},
        {"broken": "broken_plugin.spec:SPEC"},
    )
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0
    assert "27 exercises" in result.stdout
    assert "plugin 'broken' (distribution cnnlab-broken" in result.stderr
    assert "ZeroDivisionError" in result.stderr


def test_a_name_taken_by_a_built_in_exercise_is_reported(plugin_site):
    install_demo(plugin_site, name="conv2d_forward")
    assert registry.get("conv2d_forward").reference_function.__module__ == "cnnref.layers"
    (problem,) = registry.plugin_problems()
    assert problem.exercise == "conv2d_forward"
    assert "already taken by a built-in exercise" in str(problem)


def test_two_plugins_with_one_name_keep_the_first_and_report_the_second(plugin_site):
    install_demo(plugin_site)
    plugin_site.install(
        "cnnlab-zdemo",
        {
            "zdemo_plugin/__init__.py": "",
            "zdemo_plugin/spec.py": "from demo_plugin.spec import SPEC\n",
        },
        {"again": "zdemo_plugin.spec:SPEC"},
    )
    assert registry.origin("leaky_relu").distribution == "cnnlab-demo"
    (problem,) = registry.plugin_problems()
    assert problem.source.distribution == "cnnlab-zdemo"
    assert "already taken by plugin 'leaky' (distribution cnnlab-demo" in str(problem)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            {"mistake": "lambda c: {'out': np.where(c['x'] > 0, c['x'], 0.1 * c['x'])}"},
            "known mistake 'slope_forgotten' gives the reference's outputs on all",
        ),
        (
            {"make_cases": "lambda rng: cases(np.random.default_rng())"},
            "make_cases drew different cases for the same seed",
        ),
        ({"make_cases": "lambda rng: []"}, "has no check cases"),
        (
            {"make_cases": "lambda rng: [case('o', x=-np.ones(2), slope=0.1, tag=object())]"},
            "cannot go to the sandbox",
        ),
        ({"harness": "no_such_harness"}, "harness 'no_such_harness' does not exist"),
        ({"extra": "explain='no_such_explainer',"}, "explain 'no_such_explainer' does not"),
        ({"harness": "backward_dx"}, "no exercise asks for leaky_relu_forward"),
        ({"topic": "numpy"}, "hides the module 'numpy'"),
        ({"topic": "questions"}, "reserved for the built-in numeric questions"),
        ({"number": "4.1"}, "number 4.1 is already exercise 'maxpool2d_forward'"),
        ({"number": "four"}, "must look like '4.3'"),
        ({"name": "max"}, "would hide Python's builtin 'max'"),
    ],
    ids=[
        "mistake-never-differs",
        "cases-not-reproducible",
        "no-cases",
        "cases-not-plain-data",
        "unknown-harness",
        "unknown-explainer",
        "backward-without-forward",
        "topic-shadows-numpy",
        "topic-reserved",
        "number-taken",
        "number-malformed",
        "name-shadows-builtin",
    ],
)
def test_a_spec_that_fails_its_self_check_is_reported_and_left_out(
    plugin_site, overrides, expected
):
    install_demo(plugin_site, **overrides)
    name = overrides.get("name", "leaky_relu")
    assert name not in [s.name for s in registry.all_specs() if registry.origin(s.name)]
    problems = registry.plugin_problems()
    assert problems, "the broken spec was registered"
    assert all(p.source.distribution == "cnnlab-demo" and p.exercise == name for p in problems)
    assert any(expected in p.message for p in problems), [p.message for p in problems]


def test_a_reference_without_docstring_cannot_be_generated(plugin_site):
    files = demo_files()
    files["demo_plugin/reference.py"] = textwrap.dedent(
        """
        import numpy as np

        def leaky_relu(x, *, slope=0.1):
            return np.where(x > 0, x, slope * x)
        """
    )
    plugin_site.install("cnnlab-demo", files, {"leaky": "demo_plugin.spec:SPEC"})
    (problem,) = registry.plugin_problems()
    assert "has no docstring; a stub needs one" in problem.message


def test_two_mistakes_the_cases_cannot_tell_apart_are_reported():
    spec = registry.get("maxpool2d_backward")
    twin = spec.mistakes[0]
    again = twin.__class__("same_again", "the same wrong answer again", twin.produce)
    confused = dataclasses.replace(spec, mistakes=(twin, again))
    problems = authoring.check_spec(confused, registry.all_specs())
    assert any(
        "'same_again' cannot be told apart from 'gradient_to_every_element'" in p for p in problems
    ), problems
    (report, report_again) = authoring.mistake_report(confused)
    assert report_again.confused_with == ("gradient_to_every_element",)
    assert not report_again.recognisable and report_again.revealed > 0


def test_a_mistake_some_seeds_never_show_is_reported():
    spec = registry.get("maxpool2d_backward")

    def cases(rng):  # on some seeds, no overlapping windows: "overlap_overwritten" hides
        overlap = int(rng.integers(2)) == 1
        drawn = spec.make_cases(rng)
        return drawn if overlap else [c for c in drawn if c.get("stride", 9) >= c["pool_size"]]

    flaky = dataclasses.replace(spec, make_cases=cases)
    reports = {r.name: r for r in authoring.mistake_report(flaky)}
    assert (reports["overlap_overwritten"].named, reports["overlap_overwritten"].seeds) == (1, 2)
    assert reports["gradient_to_every_element"].recognisable
    problems = authoring.check_spec(flaky, registry.all_specs())
    assert problems == [
        "known mistake 'overlap_overwritten' is not named for a student who makes it on 1 of 2 "
        "seeds (some seeds draw no case that shows it): make every seed draw a case that "
        "reveals it"
    ]


def test_the_self_check_accepts_the_built_in_numpy_exercises():
    specs = registry.all_specs()
    for spec in specs:
        if spec.harness in ("call", "forward", "backward", "backward_dx", "receptive"):
            assert authoring.check_spec(spec, specs) == [], spec.name


def test_a_plugin_may_register_its_specs_itself(plugin_site):
    files = demo_files()
    files["demo_plugin/spec.py"] += "\nfrom grader.registry import register\nregister(SPEC)\n"
    files["demo_plugin/hook.py"] = "import demo_plugin.spec\nEXERCISES = []\n"
    plugin_site.install("cnnlab-demo", files, {"leaky": "demo_plugin.hook:EXERCISES"})
    assert registry.origin("leaky_relu").entry_point == "leaky"
    assert registry.plugin_problems() == []


def test_plugin_package_paths_name_the_plugin_folders_without_importing_them(plugin_site):
    from grader import plugins

    install_demo(plugin_site)
    import sys

    del sys.modules["demo_plugin.spec"], sys.modules["demo_plugin.reference"]
    del sys.modules["demo_plugin"]
    assert plugin_site.root / "demo_plugin" in plugins.plugin_package_paths()
    assert "demo_plugin" not in sys.modules


def test_no_plugins_env_ignores_every_plugin(plugin_site, monkeypatch):
    install_demo(plugin_site)
    monkeypatch.setenv("CNNLAB_NO_PLUGINS", "1")
    registry.reload_plugins()
    assert "leaky_relu" not in registry.names()


# --------------------------------------------------------------------------- wheels to ship


def _wheel(path, entry_points: str = "[cnnlab.exercises]\nleaky = demo_plugin.spec:SPEC\n"):
    import zipfile

    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("demo_plugin/__init__.py", "")
        whl.writestr("cnnlab_demo-0.1.0.dist-info/entry_points.txt", entry_points)
    return path


def test_the_autograder_gets_the_given_wheel_of_each_plugin_it_needs(plugin_site, tmp_path):
    from grader import plugins

    install_demo(plugin_site)
    given = _wheel(tmp_path / "cnnlab_demo-0.1.0-py3-none-any.whl")
    assert plugins.plugin_wheels(["leaky_relu", "conv2d_params"], tmp_path / "d", [given]) == [
        given
    ]
    assert plugins.plugin_wheels(["conv2d_params"], tmp_path / "d") == []  # built-ins only


def test_a_plugin_without_a_wheel_or_a_source_folder_is_a_clear_error(plugin_site, tmp_path):
    from grader import plugins
    from grader.errors import ConfigError

    install_demo(plugin_site)
    with pytest.raises(ConfigError) as caught:
        plugins.plugin_wheels(["leaky_relu"], tmp_path)
    message = str(caught.value)
    assert "needs the plugin cnnlab-demo 0.1.0 (it provides leaky_relu)" in message
    assert (
        "--plugin-wheel FILE" in message and "pip download --no-deps cnnlab-demo==0.1.0" in message
    )
    bad = _wheel(tmp_path / "cnnlab_demo-0.1.0-py3-none-any.whl", entry_points="")
    with pytest.raises(ConfigError, match="declares no 'cnnlab.exercises' entry point"):
        plugins.plugin_wheels(["leaky_relu"], tmp_path, [bad])
    with pytest.raises(ConfigError, match="is not a wheel file"):
        plugins.plugin_wheels(["leaky_relu"], tmp_path, [tmp_path / "nothing.whl"])


def test_a_course_naming_an_exercise_of_a_broken_plugin_says_why(plugin_site, tmp_path):
    from grader.course import CourseFileError, load_course

    plugin_site.install(
        "cnnlab-broken",
        {"broken_plugin/__init__.py": "", "broken_plugin/spec.py": "import nope\n"},
        {"avgpool2d_backward": "broken_plugin.spec:SPEC"},
    )
    path = tmp_path / "cnnlab.toml"
    path.write_text('[assignments.hw1]\nexercises = ["avgpool2d_backward"]\n')
    with pytest.raises(CourseFileError) as caught:
        load_course(path)
    message = str(caught.value)
    assert "cnnlab.toml:2: unknown exercise 'avgpool2d_backward'" in message
    assert "a plugin provides it but was not loaded: plugin 'avgpool2d_backward'" in message
    assert "ModuleNotFoundError" in message
