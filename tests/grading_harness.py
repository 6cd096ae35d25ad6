"""Shared by the tests of hidden checks: run one check and report its failure message."""

import pytest

from course.grading import GradingFailure


def failure_message(check, function, seed: int) -> str | None:
    """The GradingFailure message of one check, or None when it passes. Any other exception propagates."""
    try:
        check(function, seed=seed)
    except GradingFailure as failure:
        return str(failure)
    return None


def reference_failures(check, reference, seeds) -> dict[int, str]:
    """seed -> failure message for every seed at which the check fails the reference (there should be none)."""
    failures = {seed: message for seed in seeds if (message := failure_message(check, reference, seed)) is not None}
    print(f"\nreference {reference.__name__}: failed {len(failures)} of {len(seeds)} seeds")
    return failures


def _require_clean(message: str, phrase: str) -> None:
    """A failure message names the mistake (`phrase`) and does not point into the grader's code."""
    assert phrase in message, f"the message lacks {phrase!r}: {message}"
    # feedback shows the message only: it must not point into the grader's code
    assert "course." not in message and "Traceback" not in message, message


def assert_fails_with_a_clean_message(check, wrong_answer, seeds, phrase: str = "") -> None:
    """The check fails `wrong_answer` for every seed, with a message that contains `phrase` and does not
    point into the grader."""
    for seed in seeds:
        message = failure_message(check, wrong_answer, seed)
        assert message, f"{wrong_answer.__name__} passed with seed {seed}"
        _require_clean(message, phrase)


def catch_rate(check, wrong_answer, seeds, phrase: str = "") -> float:
    """Share of `seeds` for which the check fails `wrong_answer`, each failure with a clean message that
    contains `phrase`; prints the rate and an example message."""
    messages = [failure_message(check, wrong_answer, seed) for seed in seeds]
    for message in filter(None, messages):
        _require_clean(message, phrase)
    caught = sum(message is not None for message in messages)
    example = next((message for message in messages if message), "")
    print(
        f"\n{wrong_answer.__name__}: caught in {caught} of {len(seeds)} seeds ({caught / len(seeds):.0%}); "
        f"e.g. {example}"
    )
    return caught / len(seeds)


def student_seeds(count: int, assignment: str) -> list[int]:
    """Seeds as the grader derives them for `count` students (autograder.batch.seeds), under a test secret."""
    from autograder.batch.seeds import derive_seed

    return [derive_seed(b"a test secret, not the course's", f"student-{i:04d}", assignment) for i in range(count)]


def _seeds_for(seeds, name: str):
    """`seeds` itself, or its entry for the check `name` where it maps check names to seeds."""
    return seeds[name] if isinstance(seeds, dict) else seeds


def seed_sweeps(
    checks: dict,
    wrong_answers: dict,
    quick_seeds,
    reference_seeds,
    wrong_answer_seeds,
    required_rate: float,
    *,
    phrases: dict | None = None,
    quick_wrong_answer_seeds=None,
):
    """The four seed-sweep tests of a notebook's checks (spec section 4), for its test module to bind as
    `test_reference_passes_quick, test_reference_passes_every_check_for_200_seeds, test_wrong_answer_fails_quick,
    test_wrong_answer_caught_in_99_percent_of_seeds = seed_sweeps(...)` (pytest names a test by its binding).

    `checks` maps a graded function's name to (check, reference), `wrong_answers` a wrong answer to the name of
    its check. The reference passes `quick_seeds` (fast suite) and `reference_seeds` (slow); every wrong answer
    fails all `quick_wrong_answer_seeds` (default `quick_seeds`) with a clean message, and is caught on at least
    `required_rate` of `wrong_answer_seeds` (slow; a rate of 1.0 asks for every seed). Each seeds argument is
    seeds, or a dict of seeds by check name. `phrases` maps a wrong answer to a phrase its every failure
    message must contain, in both lanes, so that the message names the mistake.
    """
    phrases = phrases or {}
    if quick_wrong_answer_seeds is None:
        quick_wrong_answer_seeds = quick_seeds
    by_name = pytest.mark.parametrize("name", list(checks))
    by_wrong_answer = pytest.mark.parametrize(
        "wrong_answer", list(wrong_answers), ids=lambda function: function.__name__
    )

    @by_name
    def test_reference_passes_quick(name):
        assert not reference_failures(*checks[name], _seeds_for(quick_seeds, name))

    @pytest.mark.slow
    @by_name
    def test_reference_passes_every_check_for_200_seeds(name):
        assert not reference_failures(*checks[name], _seeds_for(reference_seeds, name))

    @by_wrong_answer
    def test_wrong_answer_fails_quick(wrong_answer):
        name = wrong_answers[wrong_answer]
        seeds = _seeds_for(quick_wrong_answer_seeds, name)
        assert_fails_with_a_clean_message(checks[name][0], wrong_answer, seeds, phrases.get(wrong_answer, ""))

    @pytest.mark.slow
    @by_wrong_answer
    def test_wrong_answer_caught_in_99_percent_of_seeds(wrong_answer):
        name = wrong_answers[wrong_answer]
        seeds = _seeds_for(wrong_answer_seeds, name)
        assert catch_rate(checks[name][0], wrong_answer, seeds, phrases.get(wrong_answer, "")) >= required_rate

    return (
        test_reference_passes_quick,
        test_reference_passes_every_check_for_200_seeds,
        test_wrong_answer_fails_quick,
        test_wrong_answer_caught_in_99_percent_of_seeds,
    )


def alternative_sweeps(checks: dict, alternatives: dict, quick_seeds, seeds):
    """The two seed-sweep tests of correct answers written differently from the reference, for a test module
    to bind as `test_correct_alternative_passes_quick, test_correct_alternative_passes_more_seeds =
    alternative_sweeps(...)`.

    `checks` is as for `seed_sweeps`, `alternatives` maps a correct answer to the name of its check. Each passes
    `quick_seeds` (fast suite) and `seeds` (slow); either is seeds, or a dict of seeds by check name.
    """
    by_alternative = pytest.mark.parametrize("alternative", list(alternatives), ids=lambda function: function.__name__)

    @by_alternative
    def test_correct_alternative_passes_quick(alternative):
        name = alternatives[alternative]
        assert not reference_failures(checks[name][0], alternative, _seeds_for(quick_seeds, name))

    @pytest.mark.slow
    @by_alternative
    def test_correct_alternative_passes_more_seeds(alternative):
        name = alternatives[alternative]
        assert not reference_failures(checks[name][0], alternative, _seeds_for(seeds, name))

    return test_correct_alternative_passes_quick, test_correct_alternative_passes_more_seeds
