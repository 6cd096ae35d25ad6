"""release/ is exactly what `python -m autograder release` makes from source/, and it leaks nothing."""

import ast
import json
import re
import shutil

import nbformat
import pytest
from nbgrader.utils import is_solution

from autograder.commands import release
from autograder.layout import RELEASE, SOURCE, assignments, notebooks
from autograder.pipeline import generated_cells, leaks


def test_source_notebooks_have_no_outputs():
    for path in SOURCE.rglob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path}: clear the outputs"


def test_generated_cells_are_in_sync_with_the_library():
    assert release.sync_sources(write=False) == {}, "run `python -m autograder release` to regenerate them"


def _helper_cells(root):
    for path in sorted(root.glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            spec = cell.metadata.get(generated_cells.METADATA_KEY, {})
            if spec.get("generated") == "helpers":
                yield path, cell, spec


def test_no_notebook_imports_the_course_package():
    import_of_course = re.compile(r"^\s*(from\s+course\b|import\s+course\b)", re.MULTILINE)
    checked = 0
    for root in (SOURCE, RELEASE):
        for path in sorted(root.glob("*/*.ipynb")):
            for cell in nbformat.read(path, as_version=4).cells:
                checked += 1
                assert not import_of_course.search(cell.source), f"{path}, cell {cell.get('id')} imports course"
    assert checked > 100


def test_helper_cells_show_public_names_with_derived_imports():
    cells = list(_helper_cells(SOURCE))
    assert len(cells) >= 9
    for path, cell, spec in cells:
        assert "imports" not in spec, f"{path}: imports are derived from the modules, not typed into metadata"
        assert all(not entry.rpartition(":")[2].startswith("_") for entry in spec["names"]), path
        tree = ast.parse(cell.source)
        defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        assert not any(name.startswith("_") for name in defined), f"{path}: a private name is shown"
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not module.startswith("course"), f"{path}: {ast.unparse(node)}"


def test_derived_imports_are_exactly_what_the_shown_code_uses():
    text = generated_cells.render_helpers("audit_bounds", ["clopper_pearson"])
    assert "import numpy as np\nfrom scipy import stats" in text and "import math" not in text
    # training.train_epochs needs tqdm and nothing else
    text = generated_cells.render_helpers("training", ["train_epochs"])
    assert text.splitlines()[1:3] == ["from tqdm.auto import tqdm", ""]


@pytest.mark.parametrize(
    "names, complaint",
    [
        (["_gaussian_sampler"], "only public names"),  # a private name
        (["random_shift", "train_model"], "uses 'train_epochs' from course.shown.training"),  # a course import left out
        (["predict_classes"], "uses 'batched_logits' of course.shown.pate_training"),  # a module helper left out
    ],
)
def test_helper_cells_refuse_what_would_not_run_in_a_notebook(names, complaint):
    module = "gaussian" if names == ["_gaussian_sampler"] else "pate_training"
    with pytest.raises(ValueError, match=re.escape(complaint)):
        generated_cells.render_helpers(module, names)
    if "train_model" in names:  # shown in an earlier cell of the same notebook, it is fine
        assert "def train_model" in generated_cells.render_helpers(module, names, {"train_epochs"})


def test_a_module_lives_in_one_package():
    with pytest.raises(ValueError, match="exactly one"):
        generated_cells.helper_module("no_such_module")
    shown = {path.stem for path in (SOURCE.parent / "course" / "shown").glob("*.py")}
    graded = {path.stem for path in (SOURCE.parent / "course" / "lib").glob("*.py")}
    assert shown & graded == {"__init__"}


def test_release_is_regenerated_identically(tmp_path):
    shutil.copytree(SOURCE, tmp_path / "source")
    release.generate(tmp_path)
    made = sorted(p.relative_to(tmp_path / "release") for p in (tmp_path / "release").rglob("*") if p.is_file())
    committed = sorted(p.relative_to(RELEASE) for p in RELEASE.rglob("*") if p.is_file())
    assert made == committed
    for relative in made:
        assert (tmp_path / "release" / relative).read_bytes() == (RELEASE / relative).read_bytes(), (
            f"release/{relative} is stale: run `python -m autograder release`"
        )


def test_every_assignment_is_released():
    for assignment in assignments():
        assert notebooks(assignment, RELEASE) == notebooks(assignment)


def test_committed_release_is_clean():
    assert leaks.scan_release(RELEASE, SOURCE) == []


def test_release_notebooks_keep_the_student_contract():
    for assignment in assignments():
        for name in notebooks(assignment, RELEASE):
            nb = nbformat.read(RELEASE / assignment / name, as_version=4)
            if generated_cells.public_repository() is not None:
                assert "colab-badge" in nb.cells[0].source and f"release/{assignment}/{name}" in nb.cells[0].source
            setup = next(c for c in nb.cells if c.cell_type == "code")
            assert "DP_COURSE_DATA" in setup.source and "google.colab" in setup.source
            solutions = [c for c in nb.cells if is_solution(c)]
            assert solutions and all("YOUR CODE HERE" in c.source or "YOUR ANSWER HERE" in c.source for c in solutions)


def _plant(tmp_path, text):
    shutil.copytree(RELEASE, tmp_path / "release")
    target = next((tmp_path / "release").rglob("*.ipynb"))
    nb = json.loads(target.read_text())
    nb["cells"][-1]["source"] = text
    target.write_text(json.dumps(nb))
    return leaks.scan_release(tmp_path / "release", SOURCE)


@pytest.mark.parametrize(
    "planted",
    [
        "### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
        "from course.grading import nb01",
        'check("nb01.check_create_db", create_db)',
        "import course",
        "return torch.cat((db[:remove_index], db[remove_index + 1:]))",
    ],
)
def test_leak_scan_finds_planted_leaks(tmp_path, planted):
    assert _plant(tmp_path, planted)


def test_leak_scan_finds_outputs_and_extra_files(tmp_path):
    shutil.copytree(RELEASE, tmp_path / "release")
    target = next((tmp_path / "release").rglob("*.ipynb"))
    nb = json.loads(target.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "42"}]
    target.write_text(json.dumps(nb))
    (target.parent / "answers.txt").write_text("from course.lib import databases")
    found = [str(leak) for leak in leaks.scan_release(tmp_path / "release", SOURCE)]
    assert any("has outputs" in f for f in found) and any("answers.txt" in f for f in found)
