"""Wall time of the default run (what `make run` does once set up), split per notebook,
and how much of it is kernel start-up and the TensorFlow import.

Usage: python benchmarks/end_to_end.py
Writes reports/benchmarks/end_to_end.json and end_to_end.md.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill
from results import save_results


def seconds(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def notebook_of(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    return path


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "ROICAST_WORKDIR": tmp, "TF_CPP_MIN_LOG_LEVEL": "2"}
        wall = seconds(lambda: subprocess.run(
            [sys.executable, "-m", "roicast", "run", "--run-id", "e2e"], env=env, check=True,
            capture_output=True))
        timings = json.loads((folder / "data" / "runs" / "e2e" / "metrics.json").read_text())[
            "timings_s"]
        import_tf = seconds(lambda: subprocess.run(
            [sys.executable, "-c", "import tensorflow"], env=env, check=True, capture_output=True))
        run = lambda nb: papermill.execute_notebook(str(nb), str(nb), kernel_name="python3",  # noqa: E731
                                                    progress_bar=False)
        empty = seconds(lambda: run(notebook_of(folder, "empty", "pass")))
        with_tf = seconds(lambda: run(notebook_of(folder, "tf", "import tensorflow")))
    overhead = {"kernel_start_s": empty, "kernel_start_and_tf_import_s": with_tf,
                "tf_import_in_python_s": import_tf}
    uses_tf = [nb for nb in timings if nb not in ("01_collect", "02_preprocess")]
    fixed = empty * len(timings) + (with_tf - empty) * len(uses_tf)
    result = {"wall_s": wall, "timings_s": timings, **overhead, "fixed_cost_s": fixed}
    lines = [f"Default run, `roicast run` with no parameters: {wall:.0f} s wall.", "",
             "| notebook | seconds |", "|---|---|",
             *[f"| {nb} | {s:.1f} |" for nb, s in timings.items()], "",
             f"- a papermill run of an empty notebook (kernel start): {empty:.1f} s; "
             f"of a notebook that imports TensorFlow: {with_tf:.1f} s; "
             f"`import tensorflow` in a fresh Python: {import_tf:.1f} s.",
             f"- fixed cost of {len(timings)} kernels and {len(uses_tf)} TensorFlow imports: "
             f"about {fixed:.0f} s, "
             f"{fixed / wall:.0%} of the wall time."]
    save_results("end_to_end", result, "\n".join(lines))


if __name__ == "__main__":
    main()
