"""MLflow tracking: a finished run's parameters, metrics, timings, history, reports and model.

Optional: MLflow is the `mlflow` extra (`pip install -e ".[mlflow]"`), imported only here and in
`serving`, and only when `--mlflow` asks for it. Everything logged is read from what the run
already wrote (params.json, metrics.json, run.json, history.csv, the run and report folders),
so an MLflow run holds the same numbers as the run folder, never numbers computed again.

The default store is a SQLite file in the work folder (`mlflow.db`, artefacts in `mlartifacts/`):
MLflow 3 deprecates its plain-folder store, and `mlflow ui --backend-store-uri` reads either.
"""

import importlib.util
import json
import math
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from roicast import paths
from roicast.errors import MissingArtefactError, ParameterError
from roicast.runs import store

EXPERIMENT = "roicast"
INSTALL_HINT = 'MLflow is not installed: install the extra with pip install -e ".[mlflow]" (make test does).'
MODEL_NAME = "forecaster"  # the pyfunc model's name in its MLflow run (serving.MODEL_NAME)
BATCH = 100  # MLflow's most parameters per log_batch call


def require_mlflow() -> None:
    """Fail in one line, before a run starts, when `--mlflow` is given without the extra."""
    if importlib.util.find_spec("mlflow") is None:
        raise ParameterError(INSTALL_HINT)


def check_uri(uri: str | None) -> None:
    """Fail in one line, before a run starts, when a tracking server's URI does not answer
    (MLflow itself would retry for minutes after the training)."""
    if not uri or not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise ParameterError(f"No MLflow tracking server answers at {uri} ({exc}). Start one (mlflow "
                             "server --host 127.0.0.1 --port 5000), or give --mlflow no URI to log to "
                             "the work folder.") from None


def default_uri() -> str:
    """A SQLite store in the work folder: `roicast run --mlflow` with no URI logs there."""
    return f"sqlite:///{paths.workdir() / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/"))


def experiment_id(client: Any, uri: str) -> str:
    """The `roicast` experiment, created on first use; a local store keeps its artefacts beside
    the database (in the work folder), a tracking server where it is configured to."""
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    location = (paths.workdir() / "mlartifacts").as_uri() if _is_local(uri) else None
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def commit() -> str:
    """The checkout's commit, with `-dirty` when its tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=paths.REPO_ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def flat_metrics(metrics: dict) -> dict[str, float]:
    """metrics.json's headline metrics of every predictor and space, as `space.predictor.metric`
    (`scaled.hybrid.r2`), finite numbers only."""
    flat = {}
    for space, predictors in (metrics.get("metrics") or {}).items():
        for predictor, values in predictors.items():
            for name, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    flat[f"{space}.{predictor}.{name}"] = float(value)
    return flat


def _chunks(items: list, size: int = BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _params(run_dir: Path) -> dict[str, str]:
    saved = run_dir / store.PARAMS
    values = (json.loads(saved.read_text()) if saved.exists()
              else store.read_record(run_dir.name).get("params", {}))
    return {name: value if isinstance(value, str) else json.dumps(value) for name, value in values.items()}


def _history(run_dir: Path) -> list[tuple[str, float, int]]:
    """history.csv per epoch as (`train.<column>`, value, epoch)."""
    path = run_dir / store.HISTORY
    if not path.exists():
        return []
    frame = pd.read_csv(path)
    epochs = frame.pop("epoch") if "epoch" in frame else pd.Series(range(len(frame)))
    return [(f"train.{column}", float(value), int(epoch)) for column in frame.columns
            for epoch, value in zip(epochs, frame[column], strict=True) if math.isfinite(value)]


def log_run(run_id: str, tracking_uri: str | None = None, parent: str | None = None,
            tags: dict[str, str] | None = None, model: bool = True) -> str:
    """Log run `run_id` as one MLflow run of the `roicast` experiment; its MLflow run id.

    Parameters, headline metrics (metrics.json), per-notebook timings (`time_s.<notebook>`),
    the training history per epoch (`train.<column>`, step = epoch), the run folder under
    `run/` and the HTML reports under `report/`; tags with the run id, data source and commit.
    With `parent` (an MLflow run id) it is that run's child, as a sweep's runs are. With `model`
    and a trained network, the run is also logged as the pyfunc model `forecaster` (`serving`).
    """
    require_mlflow()
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    run_dir = paths.run_dir(run_id)
    if not (run_dir / store.RUN_RECORD).exists():
        raise MissingArtefactError(f"No finished notebook in run '{run_id}' ({run_dir}): nothing to log.")
    uri = tracking_uri or default_uri()
    client = MlflowClient(uri)
    record = store.read_record(run_id)
    params = _params(run_dir)
    metrics_path = run_dir / store.METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    all_tags = {"roicast.run_id": run_id, "roicast.source": params.get("source", "unknown"),
                "roicast.commit": commit(), "roicast.status": record.get("status", "unknown"),
                **(tags or {})}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id(client, uri), run_name=run_id, tags=all_tags)
    mlflow_id = run.info.run_id
    now = run.info.start_time
    values = [Metric(name, value, now, 0) for name, value in flat_metrics(metrics).items()]
    values += [Metric(f"time_s.{nb}", float(seconds), now, 0)
               for nb, seconds in (record.get("timings_s") or {}).items()]
    values += [Metric(name, value, now, step) for name, value, step in _history(run_dir)]
    for batch in _chunks([Param(name, value) for name, value in params.items()]):
        client.log_batch(mlflow_id, params=batch)
    for batch in _chunks(values, 1000):
        client.log_batch(mlflow_id, metrics=batch)
    client.log_artifacts(mlflow_id, str(run_dir), "run")
    report_dir = paths.report_dir(run_id)
    for page in sorted(report_dir.glob("*.html")):
        client.log_artifact(mlflow_id, str(page), "report")
    if model and (run_dir / store.MODEL).exists():
        from roicast.forecasting import serving

        serving.log_model(run_id, mlflow_id, uri)
    failed = record.get("status") not in ("succeeded", "running")
    client.set_terminated(mlflow_id, "FAILED" if failed else "FINISHED")
    return mlflow_id


def log_sweep(sweep_json: Path, tracking_uri: str | None = None) -> str:
    """A sweep as a parent MLflow run (its grid and choice) with one child per grid point; the
    chosen child is tagged `roicast.chosen` and carries the served model. The parent's id."""
    require_mlflow()
    from mlflow import MlflowClient

    sweep = json.loads(Path(sweep_json).read_text())
    uri = tracking_uri or default_uri()
    client = MlflowClient(uri)
    chosen = sweep["chosen"].get("run_id")
    parent = client.create_run(experiment_id(client, uri), run_name=sweep["sweep_id"], tags={
        "roicast.sweep_id": sweep["sweep_id"], "roicast.commit": commit(),
        "roicast.chosen_run_id": chosen or "none"})
    parent_id = parent.info.run_id
    client.log_param(parent_id, "grid", json.dumps(sweep["grid"]))
    client.log_param(parent_id, "selection_metric", str(sweep["chosen"].get("metric")))
    if sweep["chosen"].get("value") is not None:
        client.log_metric(parent_id, "chosen_validation", float(sweep["chosen"]["value"]))
    for row in sweep["runs"]:
        if (paths.run_dir(row["run_id"]) / store.RUN_RECORD).exists():
            log_run(row["run_id"], uri, parent=parent_id, model=row["run_id"] == chosen,
                    tags={"roicast.sweep_id": sweep["sweep_id"],
                          "roicast.chosen": str(row["run_id"] == chosen).lower()})
    client.log_artifact(parent_id, str(sweep_json), "sweep")
    client.set_terminated(parent_id, "FINISHED")
    return parent_id
