"""Parameter sweeps: one full run per combination of a grid, as tasks on dask.distributed.

Each task is a complete `roicast run` in its own process (TensorFlow state never leaks
between runs), so the same code runs on a LocalCluster here or on a cluster given by its
scheduler address, as long as the workers see the same repository and work folder.
A sweep's id is derived from its grid: running the same grid again skips the runs that
already succeeded and retries the others.

The sweep chooses on validation only: the succeeded run with the lowest validation loss
relative to persistence's on the same validation windows (see `choose`). Test-period
figures are read apart from the validation ones and shown as a held-out check of a choice
already made; they never enter it.
"""

import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from roicast import paths
from roicast.checkout import require_checkout
from roicast.compute.cluster import connect, cores
from roicast.config import VARIANT_PARAMS, require_backend, validate_params
from roicast.errors import ParameterError
from roicast.runs import store
from roicast.runs.artefacts import atomic_path, write_json
from roicast.runs.reports import headline_rows

HEADLINE = "r2_scaled"
TEST_PREDICTORS = ("hybrid", "ensemble", "ridge", "persistence")
DM_TESTS = ("dm_vs_persistence", "dm_vs_ridge")
# Parameters 03_train's network never sees: their values train the same network, so they tie.
NETWORK_BLIND = ("walk_forward_folds", "walk_forward_unit", "walk_forward_train", "walk_forward_train_years",
                 "walk_forward_first_year", "walk_forward_members", "horizon_steps", "n_members", "bootstrap",
                 "member_variants", "interval", "trading_cost_bps")
# Parameters that leave the validation targets, their scaling and the validation days as they
# are. Every other one (data, preprocessing, split, task) changes what validation loss measures.
SAME_VALIDATION = frozenset((*VARIANT_PARAMS, "seed", "input_features", *NETWORK_BLIND))


def read_grid(path: Path) -> dict[str, list]:
    """A YAML mapping of parameter names to lists of values; a single value is fixed."""
    path = Path(path)
    if not path.exists():
        raise ParameterError(f"Grid file {path} does not exist.")
    try:
        grid = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"Grid file {path} is not valid YAML: {exc}") from None
    if not isinstance(grid, dict) or not grid:
        raise ParameterError(f"Grid file {path} must be a non-empty mapping of names to lists.")
    empty = [str(name) for name, values in grid.items() if values == []]
    if empty:
        raise ParameterError(f"Grid file {path}: {', '.join(empty)} has an empty list of values, "
                             "which would make a sweep of no runs; give at least one value.")
    return {name: values if isinstance(values, list) else [values] for name, values in grid.items()}


def expand_grid(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, validated (and its backend installed) before
    anything runs."""
    names = list(grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    for combo in combos:
        require_backend(validate_params(combo).backend)
    return combos


def sweep_id(grid: dict) -> str:
    digest = hashlib.sha1(json.dumps(grid, sort_keys=True, default=str).encode()).hexdigest()
    return f"sweep-{digest[:10]}"


def run_status(run_id: str) -> str | None:
    metrics = paths.run_dir(run_id) / store.METRICS
    return json.loads(metrics.read_text()).get("status") if metrics.exists() else None


def run_one(values: dict, run_id: str, threads: int) -> dict:
    """One full run in a child process; never raises, returns its status and last error line.

    Only runs that have not succeeded get here, so what an earlier attempt left is replaced.
    """
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(values, handle)
    try:
        done = subprocess.run([sys.executable, "-m", "roicast", "run", "--params", handle.name,
                               "--run-id", run_id, "--overwrite"], env=env, capture_output=True,
                              text=True)
    finally:
        os.unlink(handle.name)
    lines = [line for line in done.stderr.splitlines() if line.startswith("roicast: error")]
    return {"run_id": run_id, "status": "succeeded" if done.returncode == 0 else "failed",
            "error": lines[-1] if lines else (None if done.returncode == 0 else done.stderr[-500:])}


def _client(scheduler: str | None, workers: int | None, runs: int):
    """A LocalCluster of half the cores by default (each run's TensorFlow gets two threads), and
    never more workers than there are runs to do: an idle worker only costs its start."""
    return connect(scheduler, min(runs, workers or max(1, cores() // 2)))


def run_sweep(grid_path: Path, scheduler: str | None = None, workers: int | None = None) -> Path:
    """Run every combination of the grid and write reports/sweeps/<sweep-id>/index.html."""
    require_checkout()
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    grid = read_grid(grid_path)
    combos = expand_grid(grid)
    sid = sweep_id(grid)
    run_ids = [f"{sid}-{k:03d}" for k in range(len(combos))]
    todo = [k for k, run_id in enumerate(run_ids) if run_status(run_id) != "succeeded"]
    print(f"{sid}: {len(combos)} runs, {len(combos) - len(todo)} already succeeded")
    if todo:
        with _client(scheduler, workers, len(todo)) as client:
            n_workers = max(1, len(client.scheduler_info()["workers"]))
            threads = max(1, cores() // n_workers)
            futures = [client.submit(run_one, combos[k], run_ids[k], threads, pure=False) for k in todo]
            for future in tqdm(as_completed(futures), total=len(futures), desc="runs"):
                outcome = future.result()
                print(f"  {outcome['run_id']}: {outcome['status']}"
                      + (f" ({outcome['error']})" if outcome["error"] else ""))
    return write_sweep_report(sid, grid, combos, run_ids)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _ratio(loss: float | None, reference: float | None) -> float | None:
    return loss / reference if loss is not None and reference else None


def validation_figures(info: dict, members: list[dict] | None = None) -> dict:
    """03_train's best validation loss (train.json), persistence's on the same windows, their
    ratio, and the same for the mean of the ensemble members' validation losses (05_ensemble).

    The ratio is unit-free, so it still compares runs whose targets are scaled differently or
    whose validation days differ, where the raw losses do not.
    """
    loss, reference = info.get("best_val_loss"), info.get("val_loss_persistence")
    member_losses = [member.get("val_loss") for member in members or []]
    members_loss = (sum(member_losses) / len(member_losses)
                    if member_losses and None not in member_losses else None)
    return {"loss": loss, "persistence_loss": reference, "relative_loss": _ratio(loss, reference),
            "members_loss": members_loss, "members_relative_loss": _ratio(members_loss, reference)}


def held_out_figures(metrics: dict) -> dict:
    """Test-period R² (scaled) per predictor and the network's Diebold–Mariano tests.

    Kept apart from `validation_figures` so that choosing a run cannot read them.
    """
    headline = {row["predictor"]: row for row in headline_rows(metrics)}
    significance = metrics.get("significance") or {}
    return {HEADLINE: {name: headline.get(name, {}).get(HEADLINE) for name in TEST_PREDICTORS},
            **{name: significance.get(name) for name in DM_TESTS}}


def sweep_rows(combos: list[dict], run_ids: list[str]) -> list[dict]:
    rows = []
    for combo, run_id in zip(combos, run_ids, strict=True):
        metrics = _read_json(paths.run_dir(run_id) / store.METRICS)
        info = _read_json(paths.run_dir(run_id) / store.TRAIN_INFO)
        rows.append({"run_id": run_id, "status": metrics.get("status", "missing"),
                     "error": metrics.get("error"), "params": combo,
                     "validation": validation_figures(info, metrics.get("members")),
                     "test": held_out_figures(metrics)})
    return rows


def incomparable_parameters(swept: list[str]) -> list[str]:
    """Swept parameters that change the validation targets, their scaling or the validation days."""
    return [name for name in swept if name not in SAME_VALIDATION]


def selection_metric(candidates: list[dict], swept: list[str]) -> str | None:
    """The validation figure to choose on: the ratio to persistence whenever every candidate
    has one; the raw loss only where it is comparable; None where neither is."""
    if candidates and all(row["validation"]["relative_loss"] is not None for row in candidates):
        return "relative_loss"
    if (candidates and all(row["validation"]["loss"] is not None for row in candidates)
            and not incomparable_parameters(swept)):
        return "loss"
    return None


def describe_rule(metric: str | None, swept: list[str], any_succeeded: bool) -> str:
    """One paragraph for the page and sweep.json: what the choice was made on, and why."""
    names = incomparable_parameters(swept)
    changed = f"{', '.join(names)}, which {'changes' if len(names) == 1 else 'change'}"
    if not any_succeeded:
        return "No run succeeded, so nothing is chosen."
    if metric is None:
        return (f"Nothing is chosen: the grid sweeps {changed} the validation targets, "
                "their scaling or the validation days, and without persistence's validation loss "
                "(recorded for the regression task only) no unit-free figure puts the runs on one scale.")
    if metric == "loss":
        return ("Chosen: the succeeded run with the lowest best validation loss of 03_train (this task "
                "records no persistence reference); every run validates on the same targets and days.")
    rule = ("Chosen: the succeeded run with the lowest relative validation loss, 03_train's best "
            "validation loss divided by persistence's on the same validation windows (below 1 beats "
            "persistence).")
    if names:
        return rule + (f" The grid sweeps {changed} the validation targets, their "
                       "scaling or the validation days, so the raw losses are not comparable; the ratio "
                       "is unit-free, but the runs still forecast different things, so read the choice "
                       "as the most skill over persistence, not the smallest error.")
    return rule + (" Every run validates on the same targets and days, so this is also the order of the "
                   "raw validation loss.")


def selection_notes(swept: list[str]) -> list[str]:
    notes = ["The choice is made on 03_train's network, the ensemble's first member and the forecast the "
             "Diebold–Mariano tests check. 05_ensemble records each member's validation loss but not the "
             "averaged forecast's; the members' mean is shown, not chosen on, because it misses what "
             "averaging adds (it cannot rank n_members). Nothing from the test period stands in for it."]
    blind = [name for name in swept if name in NETWORK_BLIND]
    if blind:
        notes.append(f"{', '.join(blind)} {'does' if len(blind) == 1 else 'do'} not change the network "
                     "that is validated: runs that differ only there tie, and a tie goes to the first "
                     "run in grid order.")
    return notes


def choose(rows: list[dict], swept: list[str]) -> dict:
    """The configuration the sweep picks: the succeeded run with the lowest validation figure.

    Reads each row's status and `validation` only, never `test`: a user who takes the chosen
    run has tuned on validation, and its test figures stay an honest check.
    """
    candidates = [row for row in rows if row["status"] == "succeeded"]
    metric = selection_metric(candidates, swept)
    ranked = sorted(candidates, key=lambda row: row["validation"][metric]) if metric else []
    best = ranked[0] if ranked else {}
    return {"run_id": best.get("run_id"), "params": best.get("params"), "metric": metric,
            "value": best["validation"][metric] if best else None,
            "ranking": [row["run_id"] for row in ranked],
            "rule": describe_rule(metric, swept, bool(candidates)), "notes": selection_notes(swept)}


def write_sweep_report(sid: str, grid: dict, combos: list[dict], run_ids: list[str]) -> Path:
    """sweep.json (grid, every run's validation and test figures, the choice) and the page."""
    from jinja2 import Environment, PackageLoader, select_autoescape
    from matplotlib import pyplot as plt

    from roicast.plots import plot_sweep

    out = paths.reports_dir() / "sweeps" / sid
    out.mkdir(parents=True, exist_ok=True)
    rows = sweep_rows(combos, run_ids)
    swept = [name for name, values in grid.items() if len(values) > 1]
    choice = choose(rows, swept)
    write_json(out / "sweep.json", {"sweep_id": sid, "grid": grid, "swept": swept, "chosen": choice,
                                    "runs": rows})
    figure = plot_sweep(rows, swept, choice["metric"] or "loss", choice["run_id"])
    figure.savefig(out / "validation_by_parameter.png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    rank = {run_id: k for k, run_id in enumerate(choice["ranking"], start=1)}
    shown = sorted(rows, key=lambda row: rank.get(row["run_id"], len(rank) + 1))
    chosen_row = next((row for row in rows if row["run_id"] == choice["run_id"]), None)
    env = Environment(loader=PackageLoader("roicast", "templates"), autoescape=select_autoescape(["html"]))
    page = env.get_template("sweep.html").render(sid=sid, rows=shown, rank=rank, swept=swept, grid=grid,
                                                 choice=choice, chosen=chosen_row,
                                                 predictors=TEST_PREDICTORS, dm_tests=DM_TESTS)
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out / "index.html"
