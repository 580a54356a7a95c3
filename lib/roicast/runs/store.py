"""The run store: which notebook makes and reads each artefact, and the lineage that keeps a
run consistent.

A run is a record. Each notebook opens its step with `open_step`, which refuses to work on
inputs that are missing, half-written or made from an older version of their own inputs,
and closes it with `Step.finish`, which records a fingerprint of what it made (its
parameters and the versions of its inputs) in `lineage.json` and removes whatever later
notebooks made from an older version. Because the check lives in the notebooks, it protects
JupyterLab, papermill and nbconvert users as much as `roicast run`.

A step's version is a hash of its own parameters (those its `parameters` cell declares)
and of the versions of the steps it reads from, and for 01_collect also of the prices it
found. Re-running a step with the same parameters on the same inputs gives the same version,
so nothing downstream is lost; changing anything upstream makes the old results go away
instead of mixing with the new ones.

`lineage.json` and `params.json` are the run's record: they change only when its training
does. A forecast (06_forecast), which only reads the run, keeps its own entry beside its
outputs (`forecasts/lineage.json`, removed with them), so forecasting with other prices or
another day leaves the record as it was.
"""

import ast
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import filelock

from roicast import paths
from roicast.errors import ContractError, MissingArtefactError, ParameterError, RoicastError, RunInUseError
from roicast.runs.artefacts import jsonable, read_json, write_json

# The run's record: written by the runner and the store, read by any step.
LINEAGE = "lineage.json"
RUN_RECORD = "run.json"  # the runner's status, timings and parameters
PARAMS = "params.json"  # the parameters of the run's training steps, written by the runner
METRICS = "metrics.json"  # assembled from the sections below; never written by a notebook directly
# The steps' artefacts: every module names them through these constants, never as literals.
PRICES = "prices.parquet"
COLLECT_INFO = "collect.json"
DATASET = "dataset.npz"
SCALER = "scaler.json"
PREPROCESS_INFO = "preprocess.json"
MODEL = "model.keras"
HISTORY = "history.csv"
TRAIN_INFO = "train.json"
LOGS = "logs"  # TensorBoard's
PREDICTIONS = "predictions.parquet"
METRICS_PER_ASSET = "metrics_per_asset.csv"
EVALUATION = "evaluation.json"
ENSEMBLE = "ensemble"  # the members' networks, ENSEMBLE / member_file(seed)
ENSEMBLE_INFO = "ensemble.json"
FORECASTS = "forecasts"  # FORECASTS / <asof>.parquet, .csv, .json, .png, -refit.keras
FORECAST_INFO = "forecast.json"
SCRATCH = ".work"  # a step's files while it works (partial logs, folds); never an artefact
LOCKED_RUN_ENV = "ROICAST_LOCKED_RUN"  # set by the runner for its kernels: the parent holds the lock


@dataclass(frozen=True)
class StepSpec:
    """One notebook of the chain: the artefacts it reads and the ones it writes.

    A step opens only what it declares here (`Step.path`). What it reads makes its version
    depend on the steps that wrote it, so re-running one of them removes what it made.
    """

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    section: str | None = None  # its file of metrics.json sections, if any
    optional: tuple[str, ...] = ()  # outputs it may lack (TensorBoard's logs need TensorFlow)
    record: str = LINEAGE  # the file of its lineage entry
    may_read: tuple[str, ...] = ()  # inputs it uses when their step ran (05's ensemble for 06)
    run_files: tuple[str, ...] = ()  # files of the run's record it reads (params.json)
    # Pinned: its entry keeps the digest of each file it read, and it goes when any of them is
    # replaced, even by a re-run that gives its step the same version (a forecast is only a view
    # of the run's current files; retrained members are new files).
    pinned: bool = False

    @property
    def inputs(self) -> tuple[str, ...]:
        """Everything it may read of other steps' artefacts."""
        return (*self.reads, *self.may_read)


STEPS = (
    StepSpec("01_collect", (), (PRICES, COLLECT_INFO)),
    StepSpec("02_preprocess", (PRICES,), (DATASET, SCALER, PREPROCESS_INFO)),
    StepSpec("03_train", (DATASET, PREPROCESS_INFO), (MODEL, HISTORY, TRAIN_INFO, LOGS), optional=(LOGS,)),
    StepSpec("04_evaluate", (PRICES, COLLECT_INFO, DATASET, SCALER, MODEL, TRAIN_INFO),
             (PREDICTIONS, METRICS_PER_ASSET, EVALUATION), section=EVALUATION),
    StepSpec("05_ensemble", (DATASET, SCALER, MODEL, TRAIN_INFO), (ENSEMBLE, ENSEMBLE_INFO),
             section=ENSEMBLE_INFO),
    StepSpec("06_forecast", (DATASET, SCALER, MODEL, TRAIN_INFO), (FORECASTS, FORECAST_INFO),
             section=FORECAST_INFO, record=f"{FORECASTS}/{LINEAGE}", may_read=(ENSEMBLE, ENSEMBLE_INFO),
             run_files=(PARAMS,), pinned=True),
)  # fmt: skip
SPECS = {spec.name: spec for spec in STEPS}
PRODUCER = {artefact: spec.name for spec in STEPS for artefact in spec.writes}
RECORDS = tuple(dict.fromkeys(spec.record for spec in STEPS))
MEMBERS = "member_*.keras"  # the members' networks inside ENSEMBLE


def member_file(seed: int) -> str:
    """An ensemble member's network, inside ENSEMBLE."""
    return f"member_{seed}.keras"


def changes_record(steps: Sequence[str]) -> bool:
    """Whether running `steps` may change the run's record (params.json, lineage.json): a
    forecast alone never does."""
    return any(SPECS[step].record == LINEAGE for step in steps)


def upstream(step: str) -> list[str]:
    """The steps whose artefacts `step` reads or may read, in chain order."""
    producers = {PRODUCER[name] for name in SPECS[step].inputs}
    return [spec.name for spec in STEPS if spec.name in producers]


def downstream(step: str) -> list[str]:
    """Every step that reads, directly or not, what `step` writes, in chain order."""
    found: list[str] = []
    for spec in STEPS:
        if any(parent == step or parent in found for parent in upstream(spec.name)):
            found.append(spec.name)
    return found


@cache
def declared_parameters(step: str) -> tuple[str, ...]:
    """The names a notebook's `parameters` cell assigns (read from the notebook, no kernel)."""
    notebook = json.loads(paths.notebook_path(step).read_text())
    cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return tuple(target.id for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name))


def own_parameters(step: str) -> tuple[str, ...]:
    """The parameters `step` declares besides run_id."""
    return tuple(name for name in declared_parameters(step) if name != "run_id")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(jsonable(value), sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str | None:
    """Content hash of a file (None for a folder): tells a finished artefact from a changed one."""
    path = Path(path)
    if not path.is_file():
        return None
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def read_lineage(run_dir: Path) -> dict:
    """Every step's entry: those of lineage.json, and the forecast's kept beside its outputs."""
    lineage: dict = {}
    for record in RECORDS:
        path = Path(run_dir) / record
        if not path.exists():
            continue
        try:
            lineage.update(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise RoicastError(f"{path} is unreadable ({exc}). Re-run the chain with --overwrite.") from None
    return lineage


def _write_record(run_dir: Path, record: str, lineage: dict) -> None:
    """Write the entries that `record` keeps; a record left with none goes, as its step's outputs did."""
    entries = {step: entry for step, entry in lineage.items() if SPECS[step].record == record}
    if entries:
        write_json(Path(run_dir) / record, entries)
    else:
        (Path(run_dir) / record).unlink(missing_ok=True)


def lock_path(run_id: str) -> Path:
    return paths.runs_dir() / ".locks" / f"{paths.check_run_id(run_id)}.lock"


def run_lock(run_id: str) -> filelock.BaseFileLock:
    """The lock of one run, held by whoever writes it (`roicast run` for a whole chain)."""
    path = lock_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(path, timeout=0)


def acquire(run_id: str) -> filelock.BaseFileLock:
    """Take the run's lock or stop at once, naming the process that holds it."""
    lock = run_lock(run_id)
    try:
        lock.acquire()
    except filelock.Timeout:
        owner = lock_path(run_id).with_suffix(".owner")
        holder = owner.read_text().strip() if owner.exists() else "another process"
        raise RunInUseError(f"Run '{run_id}' is being written by {holder}. Wait for it to finish, "
                            "or use another --run-id.") from None
    owner = lock_path(run_id).with_suffix(".owner")
    owner.write_text(f"process {os.getpid()} since {datetime.now():%Y-%m-%d %H:%M:%S}\n")
    return lock


def is_locked(run_id: str) -> bool:
    """Whether some process holds the run's lock now (a dead process holds nothing)."""
    if os.environ.get(LOCKED_RUN_ENV) == run_id:
        return True
    lock = run_lock(run_id)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    lock.release()
    return False


def _check_not_in_use(run_id: str) -> None:
    if os.environ.get(LOCKED_RUN_ENV) != run_id and is_locked(run_id):
        acquire(run_id)  # raises, naming the holder


@dataclass
class Step:
    """An open step of one run: check its inputs with `open_step`, record its outputs with `finish`."""

    run_id: str
    name: str
    dir: Path

    def fresh_scratch(self) -> Path:
        """An empty folder for this step's work files, inside the run; `finish` removes it, and
        the next start of the step clears what an interrupted one left there."""
        folder = self.dir / SCRATCH / self.name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def path(self, name: str) -> Path:
        """The path of artefact `name`, which this step must declare in STEPS: a step opens
        nothing its entry does not name, so its version depends on all it used."""
        return artefact_path(self.dir, self.name, name)

    def finish(self, params: Any) -> str:
        """Record what this step made, drop what later steps made from an older version, and
        assemble metrics.json. Returns the step's version."""
        spec = SPECS[self.name]
        values = params.model_dump() if hasattr(params, "model_dump") else dict(params)
        mine = {name: values[name] for name in declared_parameters(self.name) if name in values}
        lineage = read_lineage(self.dir)
        inputs = {parent: lineage[parent]["version"] for parent in upstream(self.name) if parent in lineage}
        outputs = {name: file_digest(self.dir / name) for name in spec.writes}
        missing = [name for name in spec.writes
                   if name not in spec.optional and not (self.dir / name).exists()]
        if missing:
            raise MissingArtefactError(f"{self.name} did not write {', '.join(missing)} in {self.dir}.")
        content = outputs if not inputs else {}  # the first step's version includes the data it found
        version = _digest({"step": self.name, "params": mine, "inputs": inputs, "content": content})
        lineage[self.name] = {"version": version, "params": mine, "inputs": inputs, "outputs": outputs,
                              "finished": datetime.now(UTC).isoformat(timespec="seconds")}
        if spec.pinned:
            lineage[self.name]["read"] = {name: file_digest(self.dir / name) for name in spec.inputs
                                          if (self.dir / name).is_file()}
        dropped = []
        for later in downstream(self.name):
            entry = lineage.get(later)
            if entry and _stale(later, entry, lineage):
                remove_outputs(self.dir, later)
                lineage.pop(later)
                dropped.append(later)
        if dropped:
            print(f"{self.name}: removed what {', '.join(dropped)} made from its earlier output; re-run "
                  f"{', '.join(dropped)} for results from this one.")
        for record in dict.fromkeys(SPECS[step].record for step in (self.name, *dropped)):
            _write_record(self.dir, record, lineage)
        shutil.rmtree(self.dir / SCRATCH / self.name, ignore_errors=True)
        assemble_metrics(self.run_id)
        return version


def artefact_path(run_dir: Path, step: str, name: str) -> Path:
    """The path of artefact `name` for `step`, which must declare it (reads, may_read, writes
    or run_files in STEPS); a one-line error otherwise."""
    spec = SPECS[step]
    if name not in (*spec.inputs, *spec.writes, *spec.run_files):
        raise ContractError(f"{step} does not declare {name}: name it in its StepSpec in "
                            "store.STEPS (reads, may_read, writes or run_files) before opening it.")
    return Path(run_dir) / name


def _stale(step: str, entry: dict, lineage: dict) -> bool:
    """Whether `step`'s entry was made from other versions of its inputs than the current ones
    (an input step that ran since counts), or, for a pinned step, from other files."""
    current = {parent: lineage[parent]["version"] for parent in upstream(step) if parent in lineage}
    if entry["inputs"] != current:
        return True
    return any(lineage.get(PRODUCER[name], {}).get("outputs", {}).get(name) != digest
               for name, digest in entry.get("read", {}).items())


def clear_scratch(run_dir: Path) -> None:
    """Remove every step's work files once a chain has ended well: no step is working then, and
    what an interrupted earlier attempt left (partial logs) is no artefact."""
    shutil.rmtree(Path(run_dir) / SCRATCH, ignore_errors=True)


def remove_outputs(run_dir: Path, step: str) -> None:
    """Delete what `step` wrote (it was made from inputs that no longer exist)."""
    for name in SPECS[step].writes:
        target = Path(run_dir) / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def check_input(run_dir: Path, step: str, name: str, lineage: dict | None = None) -> None:
    """Stop unless artefact `name` exists, is what its notebook recorded, and was made from the
    current version of that notebook's own inputs."""
    lineage = read_lineage(run_dir) if lineage is None else lineage
    producer = PRODUCER[name]
    if not (Path(run_dir) / name).exists():
        raise MissingArtefactError(f"{step} needs {name} in {run_dir}, which {producer} writes. "
                                   f"Run {producer} for this run first.")
    entry = lineage.get(producer)
    if entry is None or entry["outputs"].get(name) != file_digest(Path(run_dir) / name):
        raise MissingArtefactError(
            f"{step} needs {name} in {run_dir}, but it is not the one {producer} recorded (it did "
            f"not finish, or the file was changed since). Re-run {producer} and the notebooks after it.")
    for parent, version in entry["inputs"].items():
        if lineage.get(parent, {}).get("version") != version:
            raise MissingArtefactError(
                f"{step} needs {name}, but it was made from an older version of {parent}'s output. "
                f"Re-run {producer} and the notebooks after it.")


def check_inputs(run_dir: Path, step: str) -> None:
    """Stop unless every input of `step` is present and current (see `check_input`); one it
    may read, only when its step ran or left it."""
    lineage = read_lineage(run_dir)
    spec = SPECS[step]
    for name in spec.inputs:
        if name in spec.reads or PRODUCER[name] in lineage or (Path(run_dir) / name).exists():
            check_input(run_dir, step, name, lineage)


def complete_steps(run_dir: Path) -> list[str]:
    """The steps whose outputs are all present, as recorded, and made from current inputs."""
    lineage = read_lineage(run_dir)
    done = []
    for spec in STEPS:
        entry = lineage.get(spec.name)
        if (entry and all(entry["outputs"].get(n) == file_digest(Path(run_dir) / n)
                          and ((Path(run_dir) / n).exists() or n in spec.optional) for n in spec.writes)
                and not _stale(spec.name, entry, lineage)):
            done.append(spec.name)
    return done


def ancestors(step: str) -> list[str]:
    """Every step whose artefacts `step` reads, directly or not, in chain order."""
    found = set(upstream(step))
    for parent in upstream(step):
        found.update(ancestors(parent))
    return [spec.name for spec in STEPS if spec.name in found]


def check_finished(run_id: str, step: str, use: str) -> Path:
    """The folder of another run that this one reads (`use`, say 'init_from=old'): stop in one
    line unless its `step` and every step before it finished and are still current, and no
    process is writing it."""
    run_dir = paths.run_dir(run_id)
    if not run_dir.is_dir():
        raise ParameterError(f"{use}: {run_dir} does not exist; name a run whose {step} has finished.")
    if is_locked(run_id):
        raise RunInUseError(f"{use}: run '{run_id}' is being written now; wait for it to finish.")
    done = complete_steps(run_dir)
    missing = [name for name in (*ancestors(step), step) if name not in done]
    if missing:
        raise ParameterError(f"{use}: in run '{run_id}', {', '.join(missing)} did not finish or its files "
                             f"changed since; name a run whose {step} has finished, or re-run it there.")
    return run_dir


def open_step(run_id: str, step: str) -> Step:
    """Start `step` of a run: the run must not be in another process's hands, and every input
    must be present and current. Nothing is changed yet."""
    run_dir = paths.run_dir(run_id)
    _check_not_in_use(run_id)
    check_inputs(run_dir, step)
    run_dir.mkdir(parents=True, exist_ok=True)
    return Step(run_id, step, run_dir)


def read_record(run_id: str) -> dict:
    """The runner's record of a run (run.json), or {} for a run made in JupyterLab."""
    path = paths.run_dir(run_id) / RUN_RECORD
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def run_status(run_id: str) -> str:
    """succeeded, failed, interrupted, running or incomplete, from the record and the lineage.

    A run whose process died still says "running" in its record but holds no lock: it was
    interrupted. A later attempt on a complete run (say `--only 05`) that failed or was
    stopped before replacing anything leaves the run succeeded: its results still stand.
    """
    attempt = read_record(run_id).get("status")
    if attempt == "running" and not is_locked(run_id):
        attempt = "interrupted"
    complete = complete_steps(paths.run_dir(run_id)) == [spec.name for spec in STEPS]
    if attempt in ("failed", "interrupted") and complete:
        return "succeeded"
    return attempt or ("succeeded" if complete else "incomplete")


def _merge(into: dict, part: dict) -> dict:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def assemble_metrics(run_id: str) -> dict:
    """metrics.json: the runner's record, then each step's section file, merged in chain order.

    Every section has one writer (run.json: the runner; evaluation.json: 04; ensemble.json: 05),
    so a step that re-runs replaces its own part and nothing else.
    """
    run_dir = paths.run_dir(run_id)
    metrics: dict = {"run_id": run_id}
    for name in (RUN_RECORD, *(spec.section for spec in STEPS if spec.section)):
        if (run_dir / name).exists():
            _merge(metrics, read_json(run_dir / name))
    metrics["status"] = run_status(run_id)
    if "params" not in metrics:  # a run made in JupyterLab: the parameters each step recorded
        steps = read_lineage(run_dir).values()
        metrics["params"] = {k: v for entry in steps for k, v in entry["params"].items()}
    write_json(run_dir / METRICS, metrics)
    return metrics
