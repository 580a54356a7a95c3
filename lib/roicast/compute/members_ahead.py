"""Ensemble members trained ahead of 05_ensemble, on the core that 03_train and 04_evaluate leave idle.

05's new members need only dataset.npz and the run's parameters, not 03's network, so when the
runner is about to run 03, 04 and 05 on a CPU it starts their training at once in a background
process (`start`); 05 then waits for it and takes the members (`take`) instead of training
them itself. The process trains them in turn, one TensorFlow import and one traced network for
all (`ensemble.train_in_turn`), so each is the network it would be if trained alone: 05's
numbers are the same either way. The members are taken only if they were trained from the same
dataset.npz and the same parameters of 03 and 05 that 05 now has (`key`); otherwise, or if the
process failed, 05 trains them as usual. Everything lives in the run's scratch folder, removed
when the chain ends well.
"""

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from roicast.compute.cluster import cores
from roicast.config import RunParams, validate_params
from roicast.runs import store
from roicast.runs.artefacts import atomic_path

FOLDER = "members-ahead"
LOCK, RESULT, LOG = "lock", "members.pickle", "log.txt"
STARTED = "started"  # written by the runner before the process starts: 05 should wait for it


def folder(run_dir: Path) -> Path:
    return Path(run_dir) / store.SCRATCH / FOLDER


def key(run_dir: Path, params: RunParams) -> str:
    """What the members depend on: dataset.npz's content and 03's and 05's parameters."""
    values = params.model_dump()
    names = sorted({*store.declared_parameters("03_train"), *store.declared_parameters("05_ensemble")}
                   - {"run_id"})
    return json.dumps({"dataset": store.file_digest(Path(run_dir) / store.DATASET),
                       "params": {name: values[name] for name in names}}, sort_keys=True, default=str)


def worthwhile(params: RunParams, notebooks: list[str], scheduler: str | None) -> bool:
    """Only when 03 and 05 both run here, on two cores or more, with members to train. (Asked in
    the runner, which never imports TensorFlow: whether there is a GPU, the process finds out.)"""
    return ({"03_train", "05_ensemble"} <= set(notebooks) and scheduler is None and params.n_members > 1
            and cores() >= 2)


def start(run_dir: Path) -> subprocess.Popen:
    """Start training the run's members in a background process (the run's params.json says
    which); its output goes to its log in the scratch folder."""
    here = folder(run_dir)
    here.mkdir(parents=True, exist_ok=True)
    for name in (RESULT, STARTED):
        (here / name).unlink(missing_ok=True)
    (here / STARTED).touch()
    with open(here / LOG, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "roicast.compute.members_ahead", str(run_dir)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def stop(process: subprocess.Popen | None) -> None:
    """End the process if it still runs (the chain failed or was interrupted before 05)."""
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait()


def take(run_dir: Path, params: RunParams) -> tuple[list, float] | None:
    """The members trained ahead for exactly this dataset and these parameters, and the wall
    seconds they took, once the process is done; None if there are none to take."""
    here = folder(run_dir)
    if not (here / STARTED).exists():
        return None
    with FileLock(str(here / LOCK)):  # held by the process while it trains
        if not (here / RESULT).exists():
            return None
        made = pickle.loads((here / RESULT).read_bytes())
    if made["key"] != key(run_dir, params):
        return None
    return made["members"], made["seconds"]


def member_file(run_dir: Path, seed: int) -> Path:
    return folder(run_dir) / store.member_file(seed)


def main(run_dir: Path) -> None:
    """The background process: train the members of the run's parameters, in turn on one core,
    or side by side on a GPU (as 05 itself would there)."""
    from roicast.features.dataset import Dataset
    from roicast.models import backends, ensemble
    from roicast.runs.artefacts import read_json

    here = folder(run_dir)
    with FileLock(str(here / LOCK)):
        params = validate_params(read_json(Path(run_dir) / store.PARAMS))
        start_time = time.perf_counter()
        dataset = Dataset.load(Path(run_dir) / store.DATASET)
        seeds, variants = ensemble.member_seeds(params)[1:], ensemble.member_variants(params)[1:]
        if backends.gpu_available():
            members = ensemble.train_here(dataset, params, seeds, variants, here)
        else:
            backends.limit_threads(1)  # the other core is 03's
            members = ensemble.train_in_turn(dataset, params, seeds, variants, here)
        made = {"key": key(run_dir, params), "members": members, "seconds": time.perf_counter() - start_time}
        with atomic_path(here / RESULT) as tmp:
            tmp.write_bytes(pickle.dumps(made))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
