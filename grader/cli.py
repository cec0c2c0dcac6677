"""The ``cnnlab`` command line: a thin shell; each verb lives in ``grader.commands``."""

from __future__ import annotations

import click

from grader import __version__
from grader.commands.batch import batch
from grader.commands.doctor import doctor
from grader.commands.export import export
from grader.commands.generate import generate_command
from grader.commands.grade import grade_command
from grader.commands.init import init_command
from grader.commands.list_ import list_exercises
from grader.commands.new_exercise import new_exercise_command
from grader.commands.pretrain import pretrain
from grader.commands.release import release_command
from grader.commands.saliency import saliency


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnnlab")
def main() -> None:
    """cnnlab: auto-graded exercises for convolutional neural networks.

    \b
    Students:     cnnlab grade exercises/
    Instructors:  cnnlab generate --seed 7 ; cnnlab release --out release/
    Courses:      cnnlab init course/ ; cnnlab generate --assignment hw1
    TAs:          cnnlab batch submissions/ --jobs 2 --out gradebook/
    """


main.add_command(list_exercises)
main.add_command(batch)
main.add_command(grade_command)
main.add_command(generate_command)
main.add_command(export)
main.add_command(release_command)
main.add_command(pretrain)
main.add_command(saliency)
main.add_command(doctor)
main.add_command(init_command)
main.add_command(new_exercise_command)


if __name__ == "__main__":  # python -m grader.cli
    main()
