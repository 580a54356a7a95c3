"""Fill README.md's generated parts from the code and from a real run, never by hand.

- the parameter table, from `RunParams` (name, notebook, default, description);
- the results table and docs/skill.png, from a run's metrics.json (default: the newest
  succeeded run with default parameters; `--run-id` picks one);
- the forecast table and docs/forecast.png, from the same run's latest forecast (06_forecast).

Each part sits between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers and is
replaced whole, so running this again after a change keeps the README true.

Usage: python scripts/update_readme.py [--run-id ID]
"""

import argparse
import json
import re
import shutil

import matplotlib
import pandas as pd

from roicast import paths
from roicast.config import RunParams
from roicast.evaluation.evaluate import unknown_part_verdict
from roicast.forecasting.forecast_table import expected_returns
from roicast.runs.store import declared_parameters

README = paths.REPO_ROOT / "README.md"
SKILL_FIGURE = paths.REPO_ROOT / "docs" / "skill.png"
FAN_FIGURE = paths.REPO_ROOT / "docs" / "forecast.png"


def parameter_table() -> str:
    owner = {name: nb for nb in paths.NOTEBOOKS for name in declared_parameters(nb)}
    defaults = RunParams().model_dump()
    lines = ["| parameter | notebook | default | meaning |", "|---|---|---|---|"]
    for name, field in RunParams.model_fields.items():
        where = "all" if name == "run_id" else owner.get(name, "")
        lines.append(f"| `{name}` | {where} | `{json.dumps(defaults[name])}` "
                     f"| {field.description or ''} |")
    return "\n".join(lines)


def default_run() -> dict:
    defaults = RunParams().model_dump()
    ignore = {"run_id"}
    candidates = []
    for path in paths.runs_dir().glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        params = {k: v for k, v in metrics.get("params", {}).items() if k not in ignore}
        if metrics.get("status") == "succeeded" and params == {k: v for k, v in defaults.items()
                                                                  if k not in ignore}:
            candidates.append((path.stat().st_mtime, metrics))
    if not candidates:
        raise SystemExit(f"No succeeded run with default parameters in {paths.runs_dir()}; "
                         "run `make run` first or name one with --run-id.")
    return max(candidates, key=lambda item: item[0])[1]


def results_table(metrics: dict) -> str:
    scaled, roi = metrics["metrics"]["scaled"], metrics["metrics"]["roi_pct"]
    lines = ["| predictor | R² (scaled) | R² (ROI %) | MAE (ROI %) | direction acc. "
             "| skill vs persistence |", "|---|---|---|---|---|---|"]
    for name in sorted(scaled, key=lambda n: -scaled[n]["r2"]):
        lines.append(f"| {name} | {scaled[name]['r2']:.3f} | {roi[name]['r2']:.3f} "
                     f"| {roi[name]['mae']:.3f} | {roi[name]['direction_acc']:.3f} "
                     f"| {roi[name]['skill_vs_persistence']:+.3f} |")
    tests = metrics.get("significance") or {}
    notes = [f"hybrid against {name.removeprefix('dm_vs_')}: Diebold–Mariano statistic "
             f"{tests[name]['statistic']:+.2f}, p = {tests[name]['p_value']:.3g}"
             for name in ("dm_vs_persistence", "dm_vs_ridge") if name in tests]
    data = metrics["data"]
    lines += ["", f"Run `{metrics['run_id']}`: {len(data['assets'])} assets, {data['n_test']} test "
              f"days up to {data['end']}; " + "; ".join(notes) + " (a negative statistic favours "
              "the hybrid).", "", unknown_part_verdict(metrics.get("unknown_part") or {})]
    return "\n".join(lines)


def forecast_table(metrics: dict) -> str:
    """The run's latest forecast for the next trading day, highest expected return first."""
    info = metrics["forecast"]
    folder = paths.run_dir(metrics["run_id"]) / "forecasts"
    table = expected_returns(pd.read_parquet(folder / f"{info['asof']}.parquet"))
    lines = ["| asset | forecast (ROI %) | interval | known on asof | implied next-day return (%) |",
             "|---|---|---|---|---|"]
    for asset, row in table.iterrows():
        lines.append(f"| {asset} | {row['forecast_roi_pct']:+.3f} | {row['lower_roi_pct']:+.3f} to "
                     f"{row['upper_roi_pct']:+.3f} | {row['known_roi_pct']:+.3f} "
                     f"| {row['implied_return_pct']:+.3f} |")
    lines += ["", f"Run `{metrics['run_id']}`, {table['model'].iloc[0]} forecast as of {info['asof']} for "
              f"{table['date'].iloc[0]}, {info['interval']:.0%} split-conformal intervals."]
    return "\n".join(lines)


def replace(text: str, name: str, content: str) -> str:
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block.")
    block = f"<!-- {name}:start -->\n{content}\n<!-- {name}:end -->"
    return pattern.sub(lambda _: block, text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-id")
    args = parser.parse_args()
    metrics = (json.loads((paths.run_dir(args.run_id) / "metrics.json").read_text())
               if args.run_id else default_run())
    text = replace(README.read_text(), "parameters", parameter_table())
    text = replace(text, "results", results_table(metrics))
    text = replace(text, "forecast", forecast_table(metrics))
    README.write_text(text)
    fan = paths.run_dir(metrics["run_id"]) / "forecasts" / f"{metrics['forecast']['asof']}.png"
    shutil.copyfile(fan, FAN_FIGURE)

    matplotlib.use("Agg")
    from roicast import plots
    from roicast.evaluation import evaluate

    SKILL_FIGURE.parent.mkdir(exist_ok=True)
    figure = plots.plot_skill(evaluate.metrics_table(metrics["metrics"], "roi_pct"))
    figure.savefig(SKILL_FIGURE, dpi=100, bbox_inches="tight")
    print(f"README.md updated from run {metrics['run_id']}; figure {SKILL_FIGURE}")


if __name__ == "__main__":
    main()
