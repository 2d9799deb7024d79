"""docs/study.ipynb, executed cell by cell against a service started on a small store: a broken cell fails."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT
from tests.service_helpers import copy_model, copy_store, service

NOTEBOOK = ROOT / "docs" / "study.ipynb"


def with_conditional(trained_store: Path, conditional_store: Path, root: Path) -> Path:
    """The trained store with the conditional dcgan beside it, as `dcgan-cond` (the notebook's default name)."""
    copy_store(trained_store, root)
    copy_model(conditional_store / "dcgan", root, "dcgan-cond")
    return root


@pytest.mark.slow
def test_the_study_notebook_runs_against_a_service(trained_store, conditional_store, tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    with service(with_conditional(trained_store, conditional_store, tmp_path / "store")) as url:
        monkeypatch.setenv("LATENTLAB_URL", url)  # the kernel inherits the environment
        monkeypatch.setenv("LATENTLAB_MODEL", "dcgan")
        NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                       ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    # the curves, the samples, the sweep, the SeFa sweep, the path; conditional: style x class, its sweep, SeFa
    assert len(pictures) == 8
    assert any("dcgan v1" in o.get("text", "") for o in outputs)
    assert any("dcgan-cond: style x class, 10 classes" in o.get("text", "") for o in outputs)


def test_the_committed_notebook_keeps_its_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs for cell in code), "run it against a trained store and commit it with its outputs"
    assert Path(NOTEBOOK).stat().st_size < 2_000_000  # it reads well on GitHub: pictures, not megabytes
