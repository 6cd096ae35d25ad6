"""Shared by the tests of hidden checks: run one check and report its failure message."""
from course.grading import GradingFailure


def failure_message(check, function, seed: int) -> str | None:
    """The GradingFailure message of one check, or None when it passes. Any other exception propagates."""
    try:
        check(function, seed=seed)
    except GradingFailure as failure:
        return str(failure)
    return None
