"""The quick-start notebook's kernel cells run as written (from the repository root)."""

from __future__ import annotations

import json
import os

from conftest import REPO_ROOT


def test_notebook_kernel_cells_run_and_partials_combine_to_the_same_answer(monkeypatch):
    notebook = json.loads((REPO_ROOT / "notebooks" / "quickstart.ipynb").read_text())
    code = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    kernel_cells = [c for c in code if "import ray" not in c and "result.run_dir" not in c]
    monkeypatch.chdir(REPO_ROOT)
    scope: dict = {}
    outputs = []
    for cell in kernel_cells:
        *body, last = cell.rstrip().splitlines()
        exec("\n".join(body), scope)  # noqa: S102 - the project's own notebook
        outputs.append(eval(last, scope))  # noqa: S307
    assert outputs[2] is True  # partial + combine over two slices equals run on the whole
    assert os.getcwd() == str(REPO_ROOT)
