"""Helpers shown to students in read-only notebook cells: data loading, models, training loops and plots.

Unlike `course.lib` (the graded references the hidden tests compare against), nothing here is graded. The
notebooks' generated helper cells are copied from these modules (`autograder/pipeline/generated_cells.py`), so this
code uses only the public packages a student has (spec rule 1) and only public names. One module here is
not shown but belongs with the analysis it extends: `pate_smooth_sensitivity`, the smooth-sensitivity release
of `pate_accounting`'s data-dependent epsilon, whose numbers `scripts/pate2018_results.py` computes for 05.
"""
