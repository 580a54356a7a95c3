"""The evidence for the default network: validation loss only, never the test period.

Trains the guide's network and the highway variant, each with the guide's smoothed input
alone and with the raw returns beside it, on the default data and split (one seed each,
every other parameter at its default), and ranks them by their best validation loss
(MSE, scaled) beside persistence's on the same validation windows. The test period is
not looked at.

Usage: python benchmarks/model_selection.py
Writes reports/benchmarks/model_selection.json and model_selection.md.
"""

import json
import os
import subprocess
import sys

from results import save_results

CANDIDATES = {
    "guide, smoothed": {"architecture": "guide", "input_features": ["smoothed"]},
    "guide, smoothed + raw": {"architecture": "guide", "input_features": ["smoothed", "raw"]},
    "highway, smoothed": {"architecture": "highway", "input_features": ["smoothed"]},
    "highway, smoothed + raw": {"architecture": "highway", "input_features": ["smoothed", "raw"]},
}


def measure(overrides: dict) -> dict:
    """Train one candidate in this process; return its validation numbers."""
    import tempfile

    from roicast import preprocess, sources, training
    from roicast.config import validate_params

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
    ranked = sorted(results, key=lambda name: results[name]["best_val_loss"])
    persistence = results[ranked[0]]["val_loss_persistence"]
    lines = ["Default data and split, seed 42, every other parameter at its default; ranked by "
             "best validation MSE (scaled). The test period is not used.", "",
             "| candidate | best val MSE | vs persistence's val MSE | best epoch | epochs | fit (s) "
             "| parameters |", "|---|---|---|---|---|---|---|"]
    for name in ranked:
        r = results[name]
        lines.append(f"| {name} | {r['best_val_loss']:.6f} | {r['best_val_loss'] / persistence:.3f} "
                     f"| {r['best_epoch']} | {r['epochs_run']} | {r['fit_seconds']:.0f} "
                     f"| {r['n_params']:,} |")
    lines += ["", f"Persistence's validation MSE: {persistence:.6f}. Lowest validation loss: "
              f"**{ranked[0]}**."]
    save_results("model_selection", results, "\n".join(lines))


if __name__ == "__main__":
    main()
