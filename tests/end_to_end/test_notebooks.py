"""Every source notebook runs top to bottom in fast mode, hidden tests included (so they pass on the
solutions), and helper cells that are checked against the library behave like it."""

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from autograder.layout import SOURCE, assignments, notebooks
from course import lib

pytestmark = pytest.mark.slow  # every test here starts a kernel, a browser or a server

SOURCE_NOTEBOOKS = [SOURCE / a / nb for a in assignments() for nb in notebooks(a)]


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=[p.parent.name for p in SOURCE_NOTEBOOKS])
def test_source_notebook_runs_in_fast_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("DP_COURSE_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def _checked_cells():
    for path in SOURCE_NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            names = cell.metadata.get("dp_course", {}).get("checked_against")
            if names:
                yield pytest.param(cell.source, names, id=f"{path.parent.name}:{cell.get('id')}")


@pytest.mark.parametrize("code, names", list(_checked_cells()))
def test_helper_cells_match_the_library(code, names):
    """A helper shown in a notebook (not generated) must behave exactly like the library function it copies."""
    namespace = {"torch": torch}
    exec(code, namespace)
    for qualified in names:
        module, name = qualified.split(".")
        reference = getattr(getattr(lib, module), name)
        shown = namespace[name]
        for seed in range(5):
            if name == "create_db":
                for p in (0.0, 0.3, 1.0):
                    torch.manual_seed(seed)
                    mine = shown(500, p)
                    torch.manual_seed(seed)
                    assert torch.equal(mine, reference(500, p))
            elif name == "get_parallel_db":
                db = lib.create_db(30, generator=torch.Generator().manual_seed(seed))
                for index in range(30):
                    assert torch.equal(shown(db, index), reference(db, index))
            else:
                pytest.fail(f"no behavioural comparison is defined for {qualified}")
