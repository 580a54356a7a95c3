"""roicast's training on a price CSV, reporting the same numbers as reference/guide_train.py.

Usage: python benchmarks/train_roicast.py PRICES.csv OUT.json [--epochs N] [-p NAME VALUE]...
"""

import argparse
import json
import resource
import tempfile
import time

import pandas as pd

from roicast.config import load_params
from roicast.evaluation import evaluate
from roicast.features import preprocess
from roicast.models import training


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("prices")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[])
    args = parser.parse_args()
    wall = time.perf_counter()
    params = load_params(overrides=[("epochs", str(args.epochs)), *args.parameter])
    prices = pd.read_csv(args.prices, index_col=0, parse_dates=True)
    arrays, scalers, _ = preprocess.build_dataset(prices, params)
    with tempfile.TemporaryDirectory() as work:
        result = training.train(arrays, params, work_dir=work, verbose=0)
    test = arrays.test_idx
    forecasts = {"model": training.predict(result.model, arrays, test)}
    metrics = evaluate.score(arrays, scalers, {**forecasts, **evaluate.baseline_forecasts(
        arrays, scalers, test)}, test)["scaled"]
    out = {
        "epoch_seconds": result.info["epoch_seconds"], "fit_seconds": result.info["fit_seconds"],
        "wall_seconds": time.perf_counter() - wall, "best_val_loss": result.info["best_val_loss"],
        "epochs_run": result.info["epochs_run"], "test_r2_scaled": metrics["model"]["r2"],
        "test_r2_persistence": metrics["persistence"]["r2"], "test_r2_ridge": metrics["ridge"]["r2"],
        "n_train": int(len(arrays.train_idx)), "n_assets": len(arrays.assets),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": dict(args.parameter),
    }
    with open(args.out, "w") as handle:
        json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
