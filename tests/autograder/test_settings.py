"""One typed, frozen settings object: every limit is a Grading traitlet with help text, read through
GradingSettings, and a configuration line the grader would ignore is refused."""

from __future__ import annotations

import dataclasses
import pickle
import re
import subprocess
import sys

import pytest
from locations import REPO
from traitlets.config import Config

from autograder.settings import Grading, GradingSettings, load_grading

TRAITS = Grading.class_traits(config=True)


def test_every_traitlet_is_a_field_of_the_settings_and_has_help():
    assert set(TRAITS) == {field.name for field in dataclasses.fields(GradingSettings)}
    assert all(len(trait.help) > 20 for trait in TRAITS.values())


def test_the_settings_are_frozen_and_travel_as_they_are():
    settings = load_grading(cell_timeout=7.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.cell_timeout = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert settings.cell_timeout == 7.5  # a fractional limit is not truncated on the way
    assert settings.wire.message_chars == settings.message_limit and settings.wire.frame_bytes == settings.reply_limit


def test_help_all_lists_every_setting():
    listed = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "--help-all"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    assert set(re.findall(r"^--Grading\.(\w+)=", listed, re.M)) == set(TRAITS)


@pytest.mark.parametrize(
    ("section", "name", "instead"),
    [
        ("Execute", "timeout", "c.Grading.cell_timeout"),
        ("Execute", "startup_timeout", "c.Grading.startup_timeout"),
        ("TrustedExecute", "output_limit", "--help-all"),
    ],
)
def test_a_configuration_line_the_grader_would_override_is_refused(section, name, instead):
    config = Config()
    config[section][name] = 3
    with pytest.raises(ValueError, match=re.escape(instead)):
        load_grading(config)


def test_no_limit_lives_outside_the_settings():
    """The module constants that were limits are traitlets now; none comes back."""
    found = subprocess.run(
        ["grep", "-rnE", r"MAX_|_LIMIT\s*=", "autograder", "--include=*.py"], capture_output=True, text=True, cwd=REPO
    ).stdout
    assert found == ""
