"""Parameter sweeps: one full run per combination of a grid, as tasks on dask.distributed.

Each task is a complete `roicast run` in its own process (TensorFlow state never leaks
between runs), so the same code runs on a LocalCluster here or on a cluster given by its
scheduler address, as long as the workers see the same repository and work folder.
A sweep's id is derived from its grid: running the same grid again skips the runs that
already succeeded and retries the others.
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
from roicast.artefacts import atomic_path, write_json
from roicast.config import validate_params
from roicast.errors import ParameterError
from roicast.reports import headline_rows

HEADLINE = "r2_scaled"


def read_grid(path: Path) -> dict[str, list]:
    """A YAML mapping of parameter names to lists of values; a single value is fixed."""
    path = Path(path)
    if not path.exists():
        raise ParameterError(f"Grid file {path} does not exist.")
    grid = yaml.safe_load(path.read_text()) or {}
    if not isinstance(grid, dict) or not grid:
        raise ParameterError(f"Grid file {path} must be a non-empty mapping of names to lists.")
    return {name: values if isinstance(values, list) else [values] for name, values in grid.items()}


def expand_grid(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, validated before anything runs."""
    names = list(grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    for combo in combos:
        validate_params(combo)
    return combos


def sweep_id(grid: dict) -> str:
    digest = hashlib.sha1(json.dumps(grid, sort_keys=True, default=str).encode()).hexdigest()
    return f"sweep-{digest[:10]}"


def run_status(run_id: str) -> str | None:
    metrics = paths.run_dir(run_id) / "metrics.json"
    return json.loads(metrics.read_text()).get("status") if metrics.exists() else None


def run_one(values: dict, run_id: str, threads: int) -> dict:
    """One full run in a child process; never raises, returns its status and last error line."""
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(values, handle)
    try:
        done = subprocess.run([sys.executable, "-m", "roicast", "run", "--params", handle.name,
                               "--run-id", run_id], env=env, capture_output=True, text=True)
    finally:
        os.unlink(handle.name)
    lines = [line for line in done.stderr.splitlines() if line.startswith("roicast: error")]
    return {"run_id": run_id, "status": "succeeded" if done.returncode == 0 else "failed",
            "error": lines[-1] if lines else (None if done.returncode == 0 else done.stderr[-500:])}


def _client(scheduler: str | None, workers: int | None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    cores = os.cpu_count() or 2
    n_workers = workers or max(1, cores // 2)
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return Client(cluster)


def run_sweep(grid_path: Path, scheduler: str | None = None, workers: int | None = None) -> Path:
    """Run every combination of the grid and write reports/sweeps/<sweep-id>/index.html."""
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    grid = read_grid(grid_path)
    combos = expand_grid(grid)
    sid = sweep_id(grid)
    run_ids = [f"{sid}-{k:03d}" for k in range(len(combos))]
    todo = [k for k, run_id in enumerate(run_ids) if run_status(run_id) != "succeeded"]
    print(f"{sid}: {len(combos)} runs, {len(combos) - len(todo)} already succeeded")
    if todo:
        with _client(scheduler, workers) as client:
            n_workers = max(1, len(client.scheduler_info()["workers"]))
            threads = max(1, (os.cpu_count() or 2) // n_workers)
            futures = [client.submit(run_one, combos[k], run_ids[k], threads, pure=False) for k in todo]
            for future in tqdm(as_completed(futures), total=len(futures), desc="runs"):
                outcome = future.result()
                print(f"  {outcome['run_id']}: {outcome['status']}"
                      + (f" ({outcome['error']})" if outcome["error"] else ""))
    return write_sweep_report(sid, grid, combos, run_ids)


def sweep_rows(combos: list[dict], run_ids: list[str]) -> list[dict]:
    rows = []
    for combo, run_id in zip(combos, run_ids, strict=True):
        path = paths.run_dir(run_id) / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() else {}
        headline = {row["predictor"]: row for row in headline_rows(metrics)}
        rows.append({"run_id": run_id, "status": metrics.get("status", "missing"),
                     "error": metrics.get("error"), "params": combo,
                     "hybrid": headline.get("hybrid", {}).get(HEADLINE),
                     "ensemble": headline.get("ensemble", {}).get(HEADLINE),
                     "persistence": headline.get("persistence", {}).get(HEADLINE),
                     "ridge": headline.get("ridge", {}).get(HEADLINE)})
    return rows


def write_sweep_report(sid: str, grid: dict, combos: list[dict], run_ids: list[str]) -> Path:
    from jinja2 import Environment, PackageLoader, select_autoescape

    from roicast.plots import plot_sweep

    out = paths.reports_dir() / "sweeps" / sid
    out.mkdir(parents=True, exist_ok=True)
    rows = sweep_rows(combos, run_ids)
    write_json(out / "sweep.json", {"sweep_id": sid, "grid": grid, "runs": rows})
    swept = [name for name, values in grid.items() if len(values) > 1]
    figure = plot_sweep(rows, swept)
    figure.savefig(out / "metric_by_parameter.png", dpi=90, bbox_inches="tight")
    env = Environment(loader=PackageLoader("roicast", "templates"), autoescape=select_autoescape(["html"]))
    page = env.get_template("sweep.html").render(sid=sid, rows=rows, swept=swept, grid=grid)
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out / "index.html"
