"""Ensemble members trained one after another (the guide's loop) or as tasks on a dask LocalCluster.

Both train the same four extra members (seeds 43-46, the default run's) on the default
data, each way in its own process, alternating, `--repeats` times. Reports the wall time
of the training, the epochs the members ran, and the test R² (scaled) of the four
members' average, so that speed is not bought with accuracy. The LocalCluster is the one 05
starts (`cluster.local_workers` single-threaded worker processes, each member in a process
of its own); its start and stop are part of its time.

Usage: python benchmarks/ensemble_speed.py [--repeats 2]
Writes reports/benchmarks/ensemble_speed.json and ensemble_speed.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results import save_results

SEEDS = [43, 44, 45, 46]
MODES = {"one after another": "sequential", "dask LocalCluster": "cluster"}


def measure(mode: str) -> dict:
    """Train the members one way in this process; return time, epochs and ensemble R²."""
    from roicast.compute import cluster
    from roicast.config import RunParams
    from roicast.data import sources
    from roicast.evaluation import evaluate
    from roicast.features import preprocess
    from roicast.models import ensemble

    params = RunParams()
    prices = sources.read_sample(None, None, None, params.history_years)
    arrays, scalers, _ = preprocess.build_dataset(prices, params)
    workers = 0 if mode == "sequential" else max(1, cluster.local_workers(len(SEEDS)))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        members = ensemble.train_seeds(arrays, params, SEEDS, Path(out), workers)
    seconds = time.perf_counter() - start
    average = np.mean([member.test for member in members], axis=0)
    test = arrays.test_idx
    r2 = evaluate.score(arrays, scalers, {"ensemble": average, "persistence": average}, test)
    epochs = [member.epochs_run for member in members]
    return {"seconds": seconds, "workers": workers, "epochs_run": epochs,
            "r2_scaled": r2["scaled"]["ensemble"]["r2"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs: dict[str, list[dict]] = {label: [] for label in MODES}
    for repeat in range(args.repeats):
        for label, mode in MODES.items():
            done = subprocess.run([sys.executable, __file__, "--measure", mode], env=env, check=True,
                                  capture_output=True, text=True)
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"repeat {repeat + 1}, {label}: {runs[label][-1]['seconds']:.1f} s", flush=True)
    median = {label: statistics.median(r["seconds"] for r in results) for label, results in runs.items()}
    base = median["one after another"]
    lines = [f"Four extra members (seeds {SEEDS[0]}-{SEEDS[-1]}), default parameters and data, "
             f"{args.repeats} alternating runs each, {os.cpu_count()} CPU cores.", "",
             "| members trained | median seconds | ratio | ensemble test R² (scaled) |", "|---|---|---|---|"]
    for label, results in runs.items():
        lines.append(f"| {label} | {median[label]:.1f} | {median[label] / base:.2f} "
                     f"| {statistics.median(r['r2_scaled'] for r in results):.4f} |")
    save_results("ensemble_speed", {"median_s": median, "runs": runs}, "\n".join(lines))


if __name__ == "__main__":
    main()
