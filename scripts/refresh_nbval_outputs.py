"""Store fresh outputs in the notebook cells that nbval checks, and strip every other output.

A kept cell keeps an execution count as well as its outputs: nbval skips the comparison for a
reference cell that was never run.

Run after changing what a `nbval-check-output` cell prints: `make nbval-refresh`.
The notebooks run with their default parameters in a temporary work folder.
"""

import os
import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

from roicast import paths

CHECKED = ("01_collect", "02_preprocess")
TAG = "nbval-check-output"


def refresh(name: str, workdir: Path) -> None:
    source = paths.notebook_path(name)
    executed = workdir / f"{name}.ipynb"
    papermill.execute_notebook(str(source), str(executed), kernel_name="python3",
                               progress_bar=False, cwd=str(paths.NOTEBOOKS_DIR))
    outputs = {cell.id: cell.outputs for cell in nbformat.read(executed, as_version=4).cells
               if cell.cell_type == "code"}
    notebook = nbformat.read(source, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        kept = TAG in cell.metadata.get("tags", [])
        # nbval compares only cells whose reference was run: a kept cell carries its number
        cell.execution_count = number if kept else None
        cell.outputs = outputs[cell.id] if kept else []
        for output in cell.outputs:
            if "execution_count" in output:
                output["execution_count"] = number
    nbformat.write(notebook, source)
    print(f"{name}: outputs of '{TAG}' cells refreshed")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ROICAST_WORKDIR"] = tmp
        for name in sys.argv[1:] or CHECKED:
            refresh(name, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
