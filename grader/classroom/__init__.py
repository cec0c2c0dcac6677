"""Grading a class: batch grading, the SQLite gradebook, the class report and the Gradescope
autograder export."""
