"""The evidence for the default network: validation loss only, never the test period.

Trains the candidates below on the default data and split (one seed each, every other
parameter at its default) and ranks them by their best validation loss divided by
persistence's on the same validation windows. The ratio, not the raw loss, is compared:
the scaling (`scale_by`) changes the units of the loss. The test period is not looked at.

Usage: python benchmarks/model_selection.py
Writes reports/benchmarks/model_selection.json and model_selection.md.
"""

import json
import os
import subprocess
import sys

from results import save_results

GUIDE_SCALING = {"scale_by": "feature", "output": "direct"}
CANDIDATES = {
    "guide network, smoothed input, per-feature scaling (the guide)": {
        "architecture": "guide", "input_features": ["smoothed"], **GUIDE_SCALING},
    "highway, smoothed + raw, per-feature scaling (the previous default)": {
        "architecture": "highway", **GUIDE_SCALING},
    "highway, smoothed + raw, per-asset scaling, direct output": {
        "architecture": "highway", "scale_by": "asset", "output": "direct"},
    "guide network, smoothed + raw, per-asset scaling, decomposed output": {
        "architecture": "guide", "scale_by": "asset", "output": "decomposed"},
    "highway, smoothed + raw, per-asset scaling, decomposed output (the default)": {},
}


def measure(overrides: dict) -> dict:
    """Train one candidate in this process; return its validation numbers."""
    import tempfile

    from roicast.config import validate_params
    from roicast.data import sources
    from roicast.features import preprocess
    from roicast.models import training

    params = validate_params(overrides)
    prices = sources.read_sample(None, None, None, params.history_years)
    arrays, _, _ = preprocess.build_dataset(prices, params)
    with tempfile.TemporaryDirectory() as work:
        info = training.train(arrays, params, work, verbose=0).info
    return {key: info[key] for key in ("best_val_loss", "val_loss_persistence", "best_epoch",
                                       "epochs_run", "fit_seconds", "n_params")}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(measure(json.loads(sys.argv[2]))))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = {}
    for name, overrides in CANDIDATES.items():
        done = subprocess.run([sys.executable, __file__, "--measure", json.dumps(overrides)],
                              env=env, check=True, capture_output=True, text=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: best val loss {results[name]['best_val_loss']:.6f}", flush=True)
    for r in results.values():
        r["relative_val_loss"] = r["best_val_loss"] / r["val_loss_persistence"]
    ranked = sorted(results, key=lambda name: results[name]["relative_val_loss"])
    lines = ["Default data and split, seed 42, every other parameter at its default; ranked by "
             "best validation MSE over persistence's on the same windows (the scaling changes the "
             "loss's units, not this ratio). The test period is not used.", "",
             "| candidate | best val MSE / persistence's | best val MSE | best epoch | epochs | fit (s) "
             "| parameters |", "|---|---|---|---|---|---|---|"]
    for name in ranked:
        r = results[name]
        lines.append(f"| {name} | {r['relative_val_loss']:.4f} | {r['best_val_loss']:.6f} "
                     f"| {r['best_epoch']} | {r['epochs_run']} | {r['fit_seconds']:.0f} "
                     f"| {r['n_params']:,} |")
    lines += ["", f"Lowest validation loss relative to persistence: **{ranked[0]}**."]
    save_results("model_selection", results, "\n".join(lines))


if __name__ == "__main__":
    main()
