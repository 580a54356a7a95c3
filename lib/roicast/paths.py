"""Where things live, anchored at the repository root rather than the working directory.

Notebooks run with their own folder as working directory (JupyterLab) or anywhere
(papermill); every path therefore comes from here. `ROICAST_WORKDIR` moves the
writable folders (runs, cache, reports) elsewhere, which the tests use to keep the
repository clean.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SAMPLE_PRICES = SAMPLE_DIR / "sp500_dataset.csv.gz"

NOTEBOOKS = ("01_collect", "02_preprocess", "03_train", "04_evaluate", "05_ensemble")


def workdir() -> Path:
    """Root of the writable folders: `$ROICAST_WORKDIR` if set, else the repository."""
    return Path(os.environ.get("ROICAST_WORKDIR", REPO_ROOT)).resolve()


def runs_dir() -> Path:
    return workdir() / "data" / "runs"


def run_dir(run_id: str) -> Path:
    """Machine artefacts of one run: `data/runs/<run_id>/`."""
    return runs_dir() / run_id


def reports_dir() -> Path:
    return workdir() / "reports"


def report_dir(run_id: str) -> Path:
    """Executed notebooks and their HTML for one run: `reports/<run_id>/`."""
    return reports_dir() / run_id


def cache_dir(source: str = "yahoo") -> Path:
    """Downloaded prices, one file per ticker: `data/cache/<source>/`."""
    return workdir() / "data" / "cache" / source


def notebook_path(name: str) -> Path:
    return NOTEBOOKS_DIR / f"{name}.ipynb"
