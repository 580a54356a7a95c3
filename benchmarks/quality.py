"""Every predictor on two periods of the bundled data, with the significance tests.

Runs the whole chain with default parameters on the guide's period (the last 2.5 years,
2020-06 to 2022-12) and on the financial crisis (2007 to 2009), then tabulates
metrics.json: R² in both spaces, MAE in ROI %, direction accuracy, for the hybrid
model the Diebold–Mariano p-values against persistence and ridge and the information
coefficient, and what each forecast says about tomorrow's own return (the unknown part).
On each period it also trains the direction task (`task: direction`, 01 to 04) and reports
its accuracy beside the majority class with the binomial p-value: lstm-fixes.md's claim of
54–58 % put to the test.

Usage: python benchmarks/quality.py [-p NAME VALUE]...
Writes reports/benchmarks/quality.json and quality.md.
"""

import argparse
import json
import os
import tempfile

from results import save_results

from roicast import paths
from roicast.config import read_values, validate_params
from roicast.runs.runner import run_chain

PERIODS = {
    "2020-06 to 2022-12 (default)": {},
    "2007 to 2009 (crisis)": {"start": "2007-01-01", "end": "2009-12-31"},
}


def table(metrics: dict) -> list[str]:
    rows = ["| predictor | R² scaled | R² ROI % | MAE ROI % | direction acc. | skill vs persistence |",
            "|---|---|---|---|---|---|"]
    scaled, roi = metrics["metrics"]["scaled"], metrics["metrics"]["roi_pct"]
    for name in sorted(scaled, key=lambda n: -scaled[n]["r2"]):
        rows.append(f"| {name} | {scaled[name]['r2']:.3f} | {roi[name]['r2']:.3f} "
                    f"| {roi[name]['mae']:.3f} | {roi[name]['direction_acc']:.3f} "
                    f"| {roi[name]['skill_vs_persistence']:.3f} |")
    tests = metrics.get("significance", {})
    rows.append("")
    for name in ("dm_vs_persistence", "dm_vs_ridge"):
        if name in tests:
            t = tests[name]
            rows.append(f"- hybrid {name.replace('_', ' ')}: statistic {t['statistic']:+.2f}, "
                        f"p = {t['p_value']:.3g} (negative favours the hybrid)")
    ic = tests.get("information_coefficient", {})
    for name in ("hybrid", "ridge", "persistence"):
        if name in ic:
            rows.append(f"- information coefficient of {name}: mean {ic[name]['mean']:+.3f}, "
                        f"mean/sd {ic[name]['ir']:+.2f} over {ic[name]['n_days']} days")
    unknown = metrics.get("unknown_part") or {}
    for name in ("hybrid", "ridge_decomposed", "ridge"):
        if name in unknown:
            u = unknown[name]
            rows.append(f"- tomorrow's own return, {name}: R² {u['r2_vs_train_mean']:+.4f} against the "
                        f"training mean, IC {u['ic_mean']:+.4f} (t = {u['ic_t']:.2f}), direction "
                        f"{u['direction_acc']:.3f} against {u['majority_acc']:.3f} (p = "
                        f"{u['p_direction_vs_majority']:.3g})")
    return rows


def direction_rows(metrics: dict) -> list[str]:
    rows = ["| predictor | accuracy | ROC AUC | p vs majority |", "|---|---|---|---|"]
    for name, values in metrics["classification"].items():
        rows.append(f"| {name} | {values['accuracy']:.3f} | {values.get('roc_auc', float('nan')):.3f} "
                    f"| {values['p_value_vs_majority']:.3g} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[])
    args = parser.parse_args()
    results, lines = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ROICAST_WORKDIR"] = tmp
        for k, (label, period) in enumerate(PERIODS.items()):
            values = {**read_values(overrides=args.parameter), **period, "run_id": f"quality-{k}"}
            run_chain(validate_params(values))
            metrics = json.loads((paths.run_dir(f"quality-{k}") / "metrics.json").read_text())
            results[label] = metrics
            data = metrics["data"]
            lines += [f"### {label}", "", f"Test targets {data['n_test']} days to {data['end']}, "
                      f"{len(data['assets'])} assets; training from {data['start']}.", "",
                      *table(metrics), ""]
            direction_id = f"quality-{k}-direction"
            run_chain(validate_params({**values, "run_id": direction_id, "task": "direction"}),
                      only=["01_collect", "02_preprocess", "03_train", "04_evaluate"])
            direction = json.loads((paths.run_dir(direction_id) / "metrics.json").read_text())
            results[f"{label}, direction"] = direction
            lines += ["Direction task (next raw return up or down), same period and split:", "",
                      *direction_rows(direction), ""]
    save_results("quality", results, "\n".join(lines))


if __name__ == "__main__":
    main()
