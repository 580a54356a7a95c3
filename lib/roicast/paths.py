"""Where things live, anchored at the repository root rather than the working directory.

Notebooks run with their own folder as working directory (JupyterLab) or anywhere
(papermill); every path therefore comes from here. `ROICAST_WORKDIR` moves the
writable folders (runs, cache, reports) elsewhere, which the tests use to keep the
repository clean.
"""

import os
import re
from pathlib import Path

from roicast.errors import ParameterError

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SAMPLE_PRICES = SAMPLE_DIR / "sp500_dataset.csv.gz"

NOTEBOOKS = ("01_collect", "02_preprocess", "03_train", "04_evaluate", "05_ensemble", "06_forecast")


RUN_ID_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESERVED_IDS = ("sweeps", "benchmarks")  # folders of reports/ that are not runs


def check_run_id(run_id: str) -> str:
    """Return `run_id` if it names a run folder and nothing else; raise otherwise.

    Every path of a run comes through here, whoever chose the id (the command line, a
    parameter file, a notebook's parameters cell), so no id can reach outside `data/runs/`.
    """
    if (not isinstance(run_id, str) or not RUN_ID_RULE.fullmatch(run_id)
            or run_id.lower() in RESERVED_IDS or run_id.lower().endswith((".html", ".json", ".lock"))):
        raise ParameterError(
            f"Invalid run id {run_id!r}: use 1 to 100 letters, digits, '.', '_' or '-', starting "
            f"with a letter or digit; not a path, not {' or '.join(RESERVED_IDS)}, not ending in "
            ".html, .json or .lock.")
    return run_id


def workdir() -> Path:
    """Root of the writable folders: `$ROICAST_WORKDIR` if set, else the repository."""
    return Path(os.environ.get("ROICAST_WORKDIR", REPO_ROOT)).resolve()


def runs_dir() -> Path:
    return workdir() / "data" / "runs"


def run_dir(run_id: str) -> Path:
    """Machine artefacts of one run: `data/runs/<run_id>/`."""
    return runs_dir() / check_run_id(run_id)


def reports_dir() -> Path:
    return workdir() / "reports"


def report_dir(run_id: str) -> Path:
    """Executed notebooks and their HTML for one run: `reports/<run_id>/`."""
    return reports_dir() / check_run_id(run_id)


def cache_dir(source: str = "yahoo") -> Path:
    """Downloaded prices, one file per ticker: `data/cache/<source>/`."""
    return workdir() / "data" / "cache" / source


def notebook_path(name: str) -> Path:
    return NOTEBOOKS_DIR / f"{name}.ipynb"
