"""The tiny chain the notebook tests branch from: six assets, two years, a small network.

Built once per `pytest` run (`conftest.tiny_chain`), whatever the number of xdist workers,
and copied into each test's own work folder, so that no test sees another's changes.
"""

import json
import os
import shutil
from pathlib import Path

from roicast.compute.cluster import CORES_ENV
from roicast.config import validate_params
from roicast.errors import RoicastError
from roicast.runs.runner import run_chain

TINY = {
    "tickers": ["AAPL", "JPM", "KO", "XOM", "MSFT", "PG"], "history_years": 2.0, "seq_len": 20,
    "lstm_units": [8, 4], "attention_heads": 2, "attention_key_dim": 8, "dense_units": 16,
    "epochs": 2, "n_members": 2, "seed": 7,
}
RUN_ID = "tiny"
BUILT = "built.json"  # the chain's outcome, written last: its presence means the folder is complete


def build(folder: Path) -> dict:
    """Run the whole chain once into `folder` (a work folder); its outcome, also kept in BUILT."""
    marker = folder / BUILT
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    # The chain a user gets: all the machine's cores, so 05's members are trained ahead beside 03.
    settings = {"ROICAST_WORKDIR": str(folder), CORES_ENV: str(os.cpu_count() or 1)}
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        outcome = {"status": run_chain(validate_params({**TINY, "run_id": RUN_ID}),
                                       log=lambda line: None).status}
    except RoicastError as exc:
        outcome = {"status": "failed", "error": str(exc)}
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    marker.write_text(json.dumps(outcome))
    return outcome


def copy_into(folder: Path, workdir: Path) -> None:
    """The built chain's run and reports, copied into a test's own work folder."""
    for part in ("data", "reports"):
        shutil.copytree(folder / part, workdir / part, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.lock"))
