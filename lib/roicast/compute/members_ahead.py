"""Ensemble members trained ahead of 05_ensemble, on the cores that 03_train and 04_evaluate leave idle.

05's new members need only dataset.npz and the run's parameters, not 03's network, so when the
runner is about to run 03, 04 and 05 on a CPU it starts their training at once in a background
process (`start`, lane 'up': from the first member on, on the core 03 leaves idle); once 03 is
done and more than one member is to be trained, a second process joins (lane 'down': from the
last member back), so that 04's idle core and then 05's wait train members too. Each member is
claimed by one lane only (`claim`, an exclusive file), and a lane stops at the first member the
other has claimed. 05 then waits for the lanes and takes the members (`take`) instead of
training them itself. A lane trains its members in turn on one thread, one TensorFlow import and
one traced network for all (`ensemble.train_in_turn`), so each is the network it would be if
trained alone: 05's numbers are the same whichever lane trained which member. The members are
taken only if every lane started trained them from the same dataset.npz and the same parameters
of 03 and 05 that 05 now has (`key`); otherwise, or if a lane failed, 05 trains them as usual.
A lane's process is forked from the run's preloaded server where it can be (`compute.preloaded`),
TensorFlow already imported. Everything lives in the run's scratch folder, removed when the
chain ends well.
"""

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from roicast.compute import preloaded
from roicast.compute.cluster import cores
from roicast.compute.member_process import exit_without_teardown
from roicast.config import RunParams, validate_params
from roicast.runs import store
from roicast.runs.artefacts import atomic_path

FOLDER = "members-ahead"
LANES = ("up", "down")  # from the first member on, and from the last back


def lock_file(lane: str) -> str:
    return f"lock-{lane}"


def result_file(lane: str) -> str:
    return f"members-{lane}.pickle"


def started_file(lane: str) -> str:
    """Written by the runner before the lane's process starts: 05 should wait for it."""
    return f"started-{lane}"


def log_file(lane: str) -> str:
    return f"log-{lane}.txt"


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


def second_lane_worthwhile(params: RunParams) -> bool:
    """A second lane pays for its TensorFlow import only with two members or more to share."""
    return params.n_members > 2


def claim(here: Path, seed: int) -> bool:
    """Whether this lane may train member `seed`: True for the first lane to ask, only."""
    try:
        (here / f"claim-{seed}").open("x").close()
    except FileExistsError:
        return False
    return True


def start(run_dir: Path, lane: str = "up") -> subprocess.Popen | preloaded.ForkedProcess:
    """Start training the run's members in a background process (the run's params.json says
    which) in `lane`; its output goes to its log in the scratch folder."""
    here = folder(run_dir)
    here.mkdir(parents=True, exist_ok=True)
    if lane == LANES[0]:  # a new chain: no claim or result of an earlier one counts
        for stale in [*here.glob("claim-*"), *(here / result_file(name) for name in LANES),
                      *(here / started_file(name) for name in LANES)]:
            stale.unlink(missing_ok=True)
    (here / started_file(lane)).touch()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if preloaded.usable():  # forked with TensorFlow imported
        return preloaded.fork(main, (Path(run_dir), lane), here / log_file(lane), env=env,
                              name=f"roicast-members-{lane}")
    with open(here / log_file(lane), "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "roicast.compute.members_ahead", str(run_dir), lane],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)


def stop(processes: list[subprocess.Popen | preloaded.ForkedProcess]) -> None:
    """End the lanes still running (the chain failed or was interrupted before 05)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait()


def take(run_dir: Path, params: RunParams) -> tuple[list, float] | None:
    """The members trained ahead for exactly this dataset and these parameters, in seed order,
    and the wall seconds from the first lane's start to the last one's end, once every lane
    started is done; None if there are none to take."""
    here = folder(run_dir)
    lanes = [lane for lane in LANES if (here / started_file(lane)).exists()]
    if not lanes:
        return None
    made = []
    for lane in lanes:
        with FileLock(str(here / lock_file(lane))):  # held by the lane's process while it trains
            if not (here / result_file(lane)).exists():
                return None
            made.append(pickle.loads((here / result_file(lane)).read_bytes()))
    if any(lane["key"] != key(run_dir, params) for lane in made):
        return None
    members = sorted((member for lane in made for member in lane["members"]), key=lambda member: member.seed)
    return members, max(lane["end"] for lane in made) - min(lane["start"] for lane in made)


def member_file(run_dir: Path, seed: int) -> Path:
    return folder(run_dir) / store.member_file(seed)


def main(run_dir: Path, lane: str) -> None:
    """A lane's process: train the members of the run's parameters that no other lane has
    claimed, in turn on one core, or side by side on a GPU (as 05 itself would there)."""
    from roicast.features.dataset import Dataset
    from roicast.models import backends, ensemble
    from roicast.runs.artefacts import read_json

    here = folder(run_dir)
    with FileLock(str(here / lock_file(lane))):
        start_time = time.time()
        params = validate_params(read_json(Path(run_dir) / store.PARAMS))
        dataset = Dataset.load(Path(run_dir) / store.DATASET)
        seeds, variants = ensemble.member_seeds(params)[1:], ensemble.member_variants(params)[1:]
        if lane == "down":
            seeds, variants = seeds[::-1], variants[::-1]
        if backends.gpu_available():
            mine = [k for k, seed in enumerate(seeds) if claim(here, seed)]
            members = ensemble.train_here(dataset, params, [seeds[k] for k in mine],
                                          [variants[k] for k in mine], here)
        else:
            backends.limit_threads(1)  # the other core is 03's, then the other lane's
            members = ensemble.train_in_turn(dataset, params, seeds, variants, here,
                                             claim=lambda seed: claim(here, seed))
        made = {"key": key(run_dir, params), "members": members, "start": start_time, "end": time.time()}
        with atomic_path(here / result_file(lane)) as tmp:
            tmp.write_bytes(pickle.dumps(made))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
    exit_without_teardown()
