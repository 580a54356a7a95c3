"""HTML reports: each executed notebook rendered by nbconvert, a page per run, a page of runs.

`reports/<run-id>/index.html` shows a run's parameters, timings, headline metrics and
links; `reports/index.html` lists every run, newest first. Both are rewritten whenever a
run changes status, so a failed run shows as failed.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from nbconvert import HTMLExporter

from roicast import paths
from roicast.config import RunParams
from roicast.errors import RoicastError
from roicast.forecasting.forecast_table import expected_returns
from roicast.runs import store
from roicast.runs.artefacts import atomic_path, copy_file, read_json, write_json

TRAINED = ("hybrid", "ensemble")  # shown first; every other predictor follows in the order it was scored
REGRESSION_COLUMNS = (("r2_scaled", "R² (scaled)", "%.3f"), ("mae_roi_pct", "MAE (ROI %)", "%.4f"),
                      ("r2_roi_pct", "R² (ROI %)", "%.3f"), ("direction_acc", "direction accuracy", "%.3f"))
DIRECTION_COLUMNS = (("accuracy", "accuracy", "%.3f"), ("roc_auc", "ROC AUC", "%.3f"),
                     ("precision", "precision", "%.3f"), ("recall", "recall", "%.3f"),
                     ("p_value_vs_majority", "p (vs majority)", "%.3g"))

_templates = Environment(loader=PackageLoader("roicast", "templates"),
                         autoescape=select_autoescape(["html"]))


def render_notebook(executed: Path, with_code: bool = False) -> Path:
    """Render an executed notebook to HTML beside it, code cells hidden unless `with_code`."""
    exporter = HTMLExporter(exclude_input=not with_code, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    html = Path(executed).with_suffix(".html")
    with atomic_path(html) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return html


def is_direction(metrics: dict) -> bool:
    """Whether a run's headline is the direction task's (04 recorded its classification scores)."""
    return bool(metrics.get("classification"))


def headline_columns(metrics: dict) -> tuple[tuple[str, str, str], ...]:
    """(key, label, format) of the headline table's columns: R² and MAE for regression; accuracy,
    ROC AUC, precision, recall and the binomial p against the majority class for direction."""
    return DIRECTION_COLUMNS if is_direction(metrics) else REGRESSION_COLUMNS


def in_order(names) -> list[str]:
    """Predictor names once each: the run's networks first, then the others as they came (the
    baselines in the registry's order, a run's `model_plugins` after them)."""
    names = list(dict.fromkeys(names))
    return [name for name in TRAINED if name in names] + [name for name in names if name not in TRAINED]


def _direction_rows(classification: dict) -> list[dict]:
    """The direction task's forecasters, in the keys of a regression row too: its accuracy is the
    direction accuracy, it has no R² or MAE (so the command line and sweeps read both alike)."""
    return [{"predictor": name, "r2_scaled": None, "mae_roi_pct": None, "r2_roi_pct": None,
             "direction_acc": classification[name]["accuracy"], "headline": classification[name]["accuracy"],
             **{key: classification[name].get(key) for key, _, _ in DIRECTION_COLUMNS}}
            for name in in_order(classification)]


def headline_rows(metrics: dict) -> list[dict]:
    """One row per predictor present: test-period R² (scaled) and MAE / R² in ROI percent, or for
    the direction task the network, the ensemble and the majority class by `DIRECTION_COLUMNS`.
    `headline` is the one number the page of runs shows: R² (scaled), or accuracy."""
    if is_direction(metrics):
        return _direction_rows(metrics["classification"])
    spaces = metrics.get("metrics", {})
    rows = []
    for name in in_order([*spaces.get("scaled", {}), *spaces.get("roi_pct", {})]):
        scaled = spaces.get("scaled", {}).get(name)
        roi = spaces.get("roi_pct", {}).get(name)
        if scaled or roi:
            rows.append({"predictor": name, "r2_scaled": (scaled or {}).get("r2"),
                         "mae_roi_pct": (roi or {}).get("mae"), "r2_roi_pct": (roi or {}).get("r2"),
                         "direction_acc": (roi or {}).get("direction_acc"),
                         "headline": (scaled or {}).get("r2")})
    return rows


def record_status(params: RunParams, notebooks: list[str], status: str, timings: dict[str, float],
                  error: str | None = None) -> Path:
    """Write the runner's record (run.json), assemble metrics.json, refresh the report pages.

    Its parameters are the run's (params.json) once it has them: a forecast's own stay in the
    forecast's record."""
    saved = paths.run_dir(params.run_id) / store.PARAMS
    recorded = read_json(saved) if saved.exists() else params.model_dump()
    write_json(paths.run_dir(params.run_id) / store.RUN_RECORD, {
        "run_id": params.run_id, "status": status, "notebooks": notebooks, "params": recorded,
        "timings_s": timings, "error": error, "updated": datetime.now(UTC).isoformat(timespec="seconds")})
    return publish(params.run_id)


def publish(run_id: str) -> Path:
    """Copy the run's metrics.json beside its report and rewrite both index pages."""
    metrics = store.assemble_metrics(run_id)
    report_dir = paths.report_dir(run_id)
    report_dir.mkdir(parents=True, exist_ok=True)
    copy_file(paths.run_dir(run_id) / store.METRICS, report_dir / store.METRICS)
    index = write_run_index(report_dir, metrics)
    write_reports_index()
    return index


def latest_forecast(run_id: str, metrics: dict) -> list[dict]:
    """Tomorrow's forecast per asset, highest expected return first; its fan chart is copied
    beside the report as forecast.png."""
    info = metrics.get("forecast")
    folder = paths.run_dir(run_id) / store.FORECASTS
    if not info or not (folder / f"{info['asof']}.parquet").exists():
        return []
    if (folder / f"{info['asof']}.png").exists():
        copy_file(folder / f"{info['asof']}.png", paths.report_dir(run_id) / "forecast.png")
    table = expected_returns(pd.read_parquet(folder / f"{info['asof']}.parquet"))
    return table.reset_index().to_dict(orient="records")


def write_run_index(report_dir: Path, metrics: dict) -> Path:
    notebooks = [{"name": nb, "html": f"{nb}.html", "exists": (report_dir / f"{nb}.html").exists(),
                  "seconds": metrics.get("timings_s", {}).get(nb)} for nb in paths.NOTEBOOKS]
    page = _templates.get_template("run.html").render(
        m=metrics, rows=headline_rows(metrics), columns=headline_columns(metrics), notebooks=notebooks,
        forecast=latest_forecast(metrics["run_id"], metrics),
        figures=sorted(p.name for p in report_dir.glob("*.png")))
    with atomic_path(report_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return report_dir / "index.html"


def _live_status(run_id: str, recorded: str | None) -> str | None:
    """The run's status now: a run whose process died shows as interrupted, not running."""
    try:
        return store.run_status(run_id) if paths.run_dir(run_id).exists() else recorded
    except RoicastError:
        return recorded


def collect_runs() -> list[dict]:
    """Every run with a metrics.json under reports/, newest first; an unreadable one is listed
    as such and skipped, so one bad file never stops the index."""
    runs = []
    for path in paths.reports_dir().glob("*/metrics.json"):
        if not paths.RUN_ID_RULE.fullmatch(path.parent.name):
            continue  # not a folder roicast made: never link to it
        link = f"{path.parent.name}/index.html"
        try:
            metrics = json.loads(path.read_text())
            mtime = path.stat().st_mtime
            metrics["status"] = _live_status(path.parent.name, metrics.get("status"))
        except (OSError, ValueError) as exc:
            runs.append({"m": {"run_id": path.parent.name, "status": "unreadable", "error": str(exc)},
                         "rows": {}, "mtime": 0.0, "link": link, "direction": False})
            continue
        rows = {row["predictor"]: row for row in headline_rows(metrics)}
        runs.append({"m": metrics, "rows": rows, "mtime": mtime, "link": link,
                     "direction": is_direction(metrics)})
    return sorted(runs, key=lambda run: run["mtime"], reverse=True)


def write_reports_index() -> Path:
    index = paths.reports_dir() / "index.html"
    runs = collect_runs()
    page = _templates.get_template("runs.html").render(
        runs=runs, predictors=in_order(name for run in runs for name in run["rows"]))
    with atomic_path(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index
