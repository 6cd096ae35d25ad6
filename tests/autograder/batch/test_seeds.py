"""Per-student seeds for hidden checks (autograder.batch.seeds): secret kept private, seeds reproducible and
different between students, failure messages that differ, thresholds that do not depend on the seed."""

import importlib
import inspect
import stat

import pytest
from grading_harness import failure_message, student_seeds

import course.lib as lib
from autograder.batch import seeds
from course.grading import GradingFailure, nb01, nb03, nb04, nb05, nb06
from course.grading.wrong_answers import nb03_04
from course.lib.dpsgd import dp_grads


def test_secret_is_made_once_and_private(tmp_path):
    path = tmp_path / "config" / "grading-secret"
    secret = seeds.course_secret(path)
    assert len(secret) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert seeds.course_secret(path) == secret  # reused, never replaced
    path.write_text("short")
    with pytest.raises(ValueError, match="too short"):
        seeds.course_secret(path)


def test_seeds_are_reproducible_and_differ_between_students_and_secrets():
    secret = b"x" * 32
    first = seeds.derive_seed(secret, "ada", "04_laplace")
    assert first == seeds.derive_seed(secret, "ada", "04_laplace") and 0 <= first < seeds.SEED_RANGE
    assert first != seeds.derive_seed(secret, "alan", "04_laplace")
    assert first != seeds.derive_seed(secret, "ada", "03_randomized_response")
    assert first != seeds.derive_seed(b"y" * 32, "ada", "04_laplace")
    assert len(set(student_seeds(500, "04_laplace"))) == 500


def test_failure_messages_differ_between_students():
    """The messages quote values drawn from the seed, so two students cannot compare notes."""
    wrong = nb03_04.private_mean_noisy_sum_not_divided
    messages = {failure_message(nb04.check_private_mean, wrong, seed) for seed in student_seeds(5, "04_laplace")}
    assert None not in messages and len(messages) > 1, messages


@pytest.mark.parametrize(
    "check, reference",
    [
        (nb01.check_create_db, lib.create_db),
        (nb01.check_create_db_and_parallels, lib.create_db_and_parallels),
        (nb03.check_randomized_response, lib.randomized_response),
        (nb04.check_laplace_mechanism, lib.laplace_mechanism),
        (nb04.check_private_sum, lib.private_sum),
        (nb04.check_gaussian_mechanism, lib.gaussian_mechanism),
        (nb05.check_laplace_noisy_max, lib.laplace_noisy_max),
        (nb06.check_dp_grads, dp_grads),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_thresholds_do_not_depend_on_the_seed(monkeypatch, check, reference):
    """Every significance level a statistical check uses is the same for every student's seed, so the
    false-failure bound of 1e-6 per check holds whatever the seed."""
    module = importlib.import_module(check.__module__)
    levels: list = []
    for name, function in inspect.getmembers(module, inspect.isfunction):
        if name == "alpha_per_test" or name.startswith("require_"):

            def recording(*args, _function=function, _name=name, **kwargs):
                bound = inspect.signature(_function).bind(*args, **kwargs)
                levels.append((_name, bound.arguments.get("alpha", bound.arguments.get("num_tests"))))
                return _function(*args, **kwargs)

            monkeypatch.setattr(module, name, recording)
    recorded = []
    for seed in student_seeds(3, check.__module__):
        levels.clear()
        try:
            check(reference, seed=seed)
        except GradingFailure as failure:  # pragma: no cover (the reference passes: see the grading tests)
            pytest.fail(f"the reference failed with seed {seed}: {failure}")
        recorded.append(list(levels))
    assert recorded[0], "the check made no statistical test"
    assert all(levels == recorded[0] for levels in recorded), recorded


def test_every_statistical_check_is_calibrated_in_stats():
    """One calibration (course.grading.stats): no check module runs a scipy test or sets a level of its own."""
    for module in (
        nb01,
        nb03,
        nb04,
        nb05,
        nb06,
        importlib.import_module("course.grading.nb02"),
        importlib.import_module("course.grading.nb07"),
    ):
        source = inspect.getsource(module)
        assert "scipy" not in source and "ALPHA" not in source and "FALSE_FAILURE" not in source, module.__name__
