"""Grading a class: per-submission jobs, their bundles, per-student seeds, the checks made once before a
batch, and the Dask cluster that runs the jobs."""
