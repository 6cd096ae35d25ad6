"""The gradebook's alembic stamp is read from nbgrader's migration files, and agrees with alembic itself."""

from pathlib import Path

import nbgrader.api
import pytest
from alembic.script import ScriptDirectory

import autograder.pipeline.config  # noqa: F401  (installs the stamp)
from autograder.pipeline import gradebook_version


def test_the_head_is_alembics_own():
    script = ScriptDirectory(str(gradebook_version.MIGRATIONS.parent))
    assert gradebook_version.alembic_head() == script.get_current_head()
    assert nbgrader.api.get_alembic_version is gradebook_version.alembic_head


def test_a_new_gradebook_is_stamped_without_a_subprocess(tmp_path, monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError("nbgrader started a subprocess")

    monkeypatch.setattr(nbgrader.api.sp, "check_output", no_subprocess)
    with nbgrader.api.Gradebook(f"sqlite:///{tmp_path / 'g.db'}") as gradebook:
        stamp = gradebook.db.execute(nbgrader.api.text("SELECT version_num FROM alembic_version")).scalar()
    assert stamp == gradebook_version.alembic_head()


def test_a_branched_migration_graph_is_refused(tmp_path: Path):
    for name, down in (("a", None), ("b", "a"), ("c", "a")):
        (tmp_path / f"{name}.py").write_text(f"revision = {name!r}\ndown_revision = {down!r}\n")
    with pytest.raises(ValueError, match="2 heads"):
        gradebook_version.alembic_head(tmp_path)
