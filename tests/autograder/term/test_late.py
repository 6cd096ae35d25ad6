"""Late submissions: course.toml, nbgrader's LateSubmissionPlugin interface, LATE_ markers, no stacking."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nbgrader.plugins import LateSubmissionPlugin

from autograder.intake.submissions import Submission
from autograder.term import late

UTC = UTC
COURSE = """
[course]
time_zone = "Europe/Zurich"
[due]
"01_databases" = "2027-03-01 23:59"
"02_differencing" = 2027-03-08T23:59:00+01:00
[extensions.ada]
"01_databases" = 2
[extensions.bob]
"02_differencing" = "2027-03-12 12:00"
[late]
plugin = "autograder.term.late.PerDayPenalty"
grace_minutes = 5
[late.options]
fraction_per_day = 0.25
"""


def _config(tmp_path, text=COURSE):
    path = tmp_path / "course.toml"
    path.write_text(text)
    return late.load_config(path)


def _submission(student="cy", assignment="01_databases", when=None, marker=False, path=Path("nb.ipynb")):
    return Submission(
        student,
        assignment,
        f"{assignment}.ipynb",
        path,
        timestamp=when,
        late_marker=marker,
        timestamp_source="zip" if when else "",
    )


def test_due_dates_are_read_in_the_course_time_zone(tmp_path):
    config = _config(tmp_path)
    assert config.due["01_databases"] == datetime(2027, 3, 1, 22, 59, tzinfo=UTC)  # CET is UTC+1 in March
    assert config.due["02_differencing"] == datetime(2027, 3, 8, 22, 59, tzinfo=UTC)
    assert config.due_for("ada", "01_databases") == datetime(2027, 3, 3, 22, 59, tzinfo=UTC)
    assert config.due_for("bob", "02_differencing") == datetime(2027, 3, 12, 11, 0, tzinfo=UTC)
    assert config.due_for("cy", "03_randomized_response") is None
    assert isinstance(config.plugin, LateSubmissionPlugin) and config.plugin.fraction_per_day == 0.25
    assert len(config.digest) == 64 and config.digest != _config(tmp_path, COURSE + "\n# edited\n").digest


def test_penalty_per_started_day_through_the_plugin(tmp_path):
    config = _config(tmp_path)
    due = config.due["01_databases"]
    on_time = late.assess(_submission(when=due + timedelta(minutes=4)), 8.0, 10.0, config)
    assert on_time.seconds_late == 0 and on_time.penalty == 0 and not on_time.late  # within the grace
    hours = late.assess(_submission(when=due + timedelta(hours=30)), 8.0, 10.0, config)
    assert hours.seconds_late == 30 * 3600 and hours.penalty == pytest.approx(4.0)  # 2 started days x 25% of 8
    assert hours.late and "late by 1 d 6 h" in hours.note
    capped = late.assess(_submission(when=due + timedelta(days=9)), 8.0, 10.0, config)
    assert capped.penalty == 8.0  # never more than the score
    extended = late.assess(_submission("ada", when=due + timedelta(hours=30)), 8.0, 10.0, config)
    assert extended.penalty == 0 and extended.seconds_late == 0


def test_late_marker_alone_is_listed_never_guessed(tmp_path):
    config = _config(tmp_path)
    unknown = late.assess(_submission(marker=True), 8.0, 10.0, config)
    assert unknown.seconds_late is None and unknown.penalty == 0 and unknown.late
    assert unknown.note.startswith("late, time unknown")
    no_time = late.assess(_submission(), 8.0, 10.0, config)
    assert no_time.seconds_late is None and not no_time.late and "time unknown" in no_time.note


def test_no_due_date_means_no_penalty(tmp_path):
    config = _config(tmp_path)
    far = datetime(2030, 1, 1, tzinfo=UTC)
    result = late.assess(_submission(assignment="03_randomized_response", when=far, marker=True), 8.0, 10.0, config)
    assert result.penalty == 0 and result.seconds_late == 0 and "no due date" in result.note
    default = late.CourseConfig()
    assert late.assess(_submission(when=far), 8.0, 10.0, default).penalty == 0


def test_nbgrader_plugin_itself_can_be_the_policy(tmp_path):
    text = COURSE.replace('"autograder.term.late.PerDayPenalty"', '"nbgrader.plugins.LateSubmissionPlugin"')
    config = _config(tmp_path, text.replace("fraction_per_day = 0.25", 'penalty_method = "zero"'))
    result = late.assess(_submission(when=config.due["01_databases"] + timedelta(hours=1)), 7.0, 10.0, config)
    assert result.penalty == 7.0  # nbgrader's 'zero': the whole score


def test_regrade_recomputes_and_never_stacks(tmp_path):
    """nbgrader #723: the penalty is computed from the raw score each time and late.csv is rewritten."""
    config = _config(tmp_path)
    submission = _submission(when=config.due["01_databases"] + timedelta(hours=2))
    first = late.assess(submission, 8.0, 10.0, config)
    again = late.assess(submission, 8.0, 10.0, config)
    assert first == again and first.penalty == 2.0
    path = tmp_path / "late.csv"
    late.write_late([first], path)
    late.write_late([again], path)
    rows = late.read_late(path)
    assert len(rows) == 1 and rows[0]["penalty"] == "2" and rows[0]["seconds_late"] == "7200"
    assert late.is_late_row(rows[0])


def test_grading_error_and_missing_notebook(tmp_path):
    config = _config(tmp_path)
    when = config.due["01_databases"] + timedelta(hours=2)
    assert late.assess(_submission(when=when), None, 10.0, config).penalty == 0
    missing = late.assess(_submission(path=None), 0.0, 10.0, config)
    assert missing.note == "not submitted" and not missing.late


@pytest.mark.parametrize(
    "text, message",
    [
        ('[course]\ntime_zone = "Mars/Olympus"\n', "IANA"),
        ('[due]\n"01_databases" = "next tuesday-ish"\n', "not a timestamp"),
        ('[extensions.ada]\n"01_databases" = 3\n', "has no due date"),
        ('[late]\nplugin = "collections.OrderedDict"\n', "is not a nbgrader.plugins.LateSubmissionPlugin"),
        ('[late]\nplugin = "autograder.term.late.PerDayPenalty"\n[late.options]\nfraction = 1\n', "not options of"),
        ("[late]\ngrace_minutes = -1\n", "grace_minutes"),
        ("[deadlines]\n", "unknown section"),
        ("[due\n", "not valid TOML"),
    ],
)
def test_bad_configuration_is_a_value_error(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, text)


def test_the_repository_course_file_loads():
    config = late.load_config()
    assert str(config.time_zone) and isinstance(config.plugin, LateSubmissionPlugin)


def test_parse_time_forms():
    zone = late.load_config().time_zone
    assert late.parse_time("2017-01-30 15:30:10.000000 UTC", zone) == datetime(2017, 1, 30, 15, 30, 10, tzinfo=UTC)
    assert late.parse_time("2027-03-01T23:59:00+01:00", zone) == datetime(2027, 3, 1, 22, 59, tzinfo=UTC)
    assert late.parse_time("2016-01-30-15-00-00", late.ZoneInfo("UTC")) == datetime(2016, 1, 30, 15, tzinfo=UTC)
    with pytest.raises(ValueError):
        late.parse_time("", zone)
