"""Helpers shown to students in read-only notebook cells: data loading, models, training loops and plots.

Unlike `course.lib` (the graded references the hidden tests compare against), nothing here is graded. The
notebooks' generated helper cells are copied from these modules (`autograder/generated_cells.py`), so this
code uses only the public packages a student has (spec rule 1) and only public names.
"""
