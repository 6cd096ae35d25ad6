"""Grading on Dask: a LocalCluster of `Grading.workers` processes, or a running scheduler (`Grading.scheduler`).

Tasks carry data, not paths: each is `autograder.submission.grade_submission(job, bundle, limits)`, with the
submission's bytes and its assignment's bundle (scattered once to every worker), and returns its result as
data; only the client process writes OUT and the class gradebook.
"""
from __future__ import annotations

from typing import Callable

from dask.distributed import Client, LocalCluster, as_completed

from .settings import Grading
from .submission import GRADING_ERROR, Bundle, Job, SubmissionResult, bundle_cells, failed, grade_submission


def run(jobs: list[Job], bundles: dict[str, Bundle], limits: dict, settings: Grading,
        done: Callable[[], None]) -> list[SubmissionResult]:
    """Every job's result, in order; `done()` is called as each one finishes."""
    cluster = None
    if settings.scheduler:
        client = Client(settings.scheduler)
    else:
        # Processes, one thread each: a worker grades one notebook at a time (its kernel is a sandbox).
        cluster = LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, memory_limit=0, silence_logs=50)
        client = Client(cluster)
    try:
        shipped = {name: client.scatter(bundle, broadcast=True) for name, bundle in bundles.items()}
        futures = [client.submit(grade_submission, job, shipped[job.assignment], limits, pure=False) for job in jobs]
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[SubmissionResult | None] = [None] * len(jobs)
        for future in as_completed(futures):
            i = index[future.key]
            try:
                results[i] = future.result()
            except Exception as error:  # noqa: BLE001 (the task itself died: a grading error, never lost)
                job = jobs[i]
                results[i] = failed(job, bundle_cells(bundles[job.assignment], job.notebook),
                                    f"{GRADING_ERROR}the grading task failed: {type(error).__name__}: {error}",
                                    grading_error=True)
            done()
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
