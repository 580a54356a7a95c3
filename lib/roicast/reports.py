"""HTML reports: each executed notebook rendered by nbconvert, a page per run, a page of runs.

`reports/<run-id>/index.html` shows a run's parameters, timings, headline metrics and
links; `reports/index.html` lists every run, newest first. Both are rewritten whenever a
run changes status, so a failed run shows as failed.
"""

import shutil
from pathlib import Path

import nbformat
from jinja2 import Environment, PackageLoader, select_autoescape
from nbconvert import HTMLExporter

from roicast import paths
from roicast.artefacts import atomic_path, update_json
from roicast.config import RunParams

HEADLINE_PREDICTORS = ("hybrid", "ensemble", "ridge", "persistence", "train_mean", "ceiling")

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


def headline_rows(metrics: dict) -> list[dict]:
    """One row per predictor present: test-period R² (scaled) and MAE / R² in ROI percent."""
    spaces = metrics.get("metrics", {})
    rows = []
    for name in HEADLINE_PREDICTORS:
        scaled = spaces.get("scaled", {}).get(name)
        roi = spaces.get("roi_pct", {}).get(name)
        if scaled or roi:
            rows.append({"predictor": name, "r2_scaled": (scaled or {}).get("r2"),
                         "mae_roi_pct": (roi or {}).get("mae"), "r2_roi_pct": (roi or {}).get("r2"),
                         "direction_acc": (roi or {}).get("direction_acc")})
    return rows


def record_status(params: RunParams, status: str, timings: dict[str, float],
                  error: str | None = None) -> Path:
    """Write status and timings into metrics.json, copy it to the report, refresh both indexes."""
    run_dir, report_dir = paths.run_dir(params.run_id), paths.report_dir(params.run_id)
    metrics = update_json(run_dir / "metrics.json", run_id=params.run_id, status=status,
                          params=params.model_dump(), timings_s=timings, error=error)
    report_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run_dir / "metrics.json", report_dir / "metrics.json")
    index = write_run_index(report_dir, metrics)
    write_reports_index()
    return index


def write_run_index(report_dir: Path, metrics: dict) -> Path:
    notebooks = [{"name": nb, "html": f"{nb}.html", "exists": (report_dir / f"{nb}.html").exists(),
                  "seconds": metrics.get("timings_s", {}).get(nb)} for nb in paths.NOTEBOOKS]
    page = _templates.get_template("run.html").render(
        m=metrics, rows=headline_rows(metrics), notebooks=notebooks,
        figures=sorted(p.name for p in report_dir.glob("*.png")))
    with atomic_path(report_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return report_dir / "index.html"


def collect_runs() -> list[dict]:
    """Every run with a metrics.json under reports/, newest first."""
    import json

    runs = []
    for path in paths.reports_dir().glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        rows = {row["predictor"]: row for row in headline_rows(metrics)}
        runs.append({"m": metrics, "rows": rows, "mtime": path.stat().st_mtime,
                     "link": f"{path.parent.name}/index.html"})
    return sorted(runs, key=lambda run: run["mtime"], reverse=True)


def write_reports_index() -> Path:
    index = paths.reports_dir() / "index.html"
    page = _templates.get_template("runs.html").render(runs=collect_runs(),
                                                       predictors=HEADLINE_PREDICTORS)
    with atomic_path(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index
