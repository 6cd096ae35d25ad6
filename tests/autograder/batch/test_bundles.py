"""Bundles are made once per assignment version: the template is cached under a digest of the source and
the grading code, and the class gradebook learns an assignment's cells only when it lacks them."""

import nbformat
import pytest

from autograder.batch import bundles
from autograder.layout import SOURCE

ASSIGNMENT = "01_databases"


def _refuse(*args, **kwargs):
    raise AssertionError("generate_assignment ran")


def _copy_source(tmp_path):
    for path in (SOURCE / ASSIGNMENT).iterdir():
        (tmp_path / "source" / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
        (tmp_path / "source" / ASSIGNMENT / path.name).write_bytes(path.read_bytes())
    return tmp_path / "source"


def test_a_cached_template_skips_nbgrader_and_is_the_same(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = bundles.make_bundle(SOURCE, ASSIGNMENT, f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "s1", cache)
    assert len(list(cache.glob(f"{ASSIGNMENT}-*.db"))) == 1
    monkeypatch.setattr(bundles, "generate", _refuse)
    again = bundles.make_bundle(SOURCE, ASSIGNMENT, f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "s2", cache)
    assert again == first
    # A new SQLite class gradebook is a copy of the template; one that knows the cells is left alone.
    assert (tmp_path / "b.db").read_bytes() == first.gradebook
    bundles.make_bundle(SOURCE, ASSIGNMENT, f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "s3", cache)
    cells = bundles._cells(f"sqlite:///{tmp_path / 'b.db'}", ASSIGNMENT)
    assert cells and cells == bundles._cells(f"sqlite:///{tmp_path / 'a.db'}", ASSIGNMENT)


def test_an_edited_source_makes_a_new_template_and_updates_the_class_gradebook(tmp_path, monkeypatch):
    cache, source = tmp_path / "cache", _copy_source(tmp_path)
    url = f"sqlite:///{tmp_path / 'class.db'}"
    before = bundles.make_bundle(source, ASSIGNMENT, url, tmp_path / "s1", cache)
    path = next((source / ASSIGNMENT).glob("*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    graded = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("points"))
    graded.metadata.nbgrader["points"] = graded.metadata.nbgrader["points"] + 1
    nbformat.write(nb, path)
    after = bundles.make_bundle(source, ASSIGNMENT, url, tmp_path / "s2", cache)
    assert after.gradebook != before.gradebook and len(list(cache.glob("*.db"))) == 2
    assert bundles._cells(url, ASSIGNMENT) == bundles._cells(_as_url(tmp_path, after), ASSIGNMENT)
    assert bundles._cells(url, ASSIGNMENT) != bundles._cells(_as_url(tmp_path, before, "old"), ASSIGNMENT)


def _as_url(tmp_path, bundle, name="new"):
    (tmp_path / f"{name}.db").write_bytes(bundle.gradebook)
    return f"sqlite:///{tmp_path / f'{name}.db'}"


def test_without_a_cache_nothing_is_kept(tmp_path):
    bundles.make_bundle(SOURCE, ASSIGNMENT, f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "s", None)
    assert not list(tmp_path.rglob("*-*.db"))


@pytest.mark.parametrize("name", ["", "x"])
def test_the_cache_folder_is_a_setting(name, tmp_path):
    from autograder.settings import load_grading

    settings = load_grading(bundle_cache=str(tmp_path / name) if name else "")
    assert settings.bundle_cache == (tmp_path / name if name else None)
