"""Twenty-eight years out of sample: the network, the ridge, persistence and the training mean,
retrained and tested year by year on the bundled data.

Each test year from 1995 to 2022 is one fold: everything fitted (scalers, the network, the
ridge) is refitted on the five calendar years before it (rolling window), with default network
parameters otherwise. Every predictor is scored on tomorrow's own return (R² against the
training mean, daily rank IC, direction against the majority class) and on the smoothed target
beside its ceiling; the verdict says whether the network's IC holds across years
(`roicast.evaluation.study`). Prices come through 01's collect path (source 'sample', from the file's first
day), so every fold sees the same data whatever years are asked for.

Usage: python benchmarks/study.py [--workers N] [--years FIRST [LAST]] [--epochs E] [--scheduler ADDR]
                                  [--compare-workers]
  --workers 1 trains the folds one after another in this process; N ≥ 2 as dask tasks on a
  LocalCluster of N processes; --scheduler on an existing dask cluster.
Writes reports/benchmarks/study.json and study.md; with --compare-workers the same years run
once in one process and once on the LocalCluster, and study_workers.json/.md compare the two.
"""

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from results import save_results

from roicast import paths
from roicast.config import RunParams
from roicast.data import collect
from roicast.evaluation import study, walkforward
from roicast.features import preprocess

FIRST_YEAR, LAST_YEAR, TRAIN_YEARS = 1995, 2022, 5
DATA_START = "1990-01-01"
YEAR_COLUMNS = {  # (space, metric, predictor): column of the per-year table
    (study.SPACE, "ic_mean", "hybrid"): "IC hybrid", (study.SPACE, "ic_mean", "ridge"): "IC ridge",
    (study.SPACE, "ic_mean", "persistence"): "IC persistence",
    (study.SPACE, "ic_mean", "train_mean"): "IC train mean",
    (study.SPACE, "r2_vs_train_mean", "hybrid"): "R² return hybrid",
    (study.SPACE, "r2_vs_train_mean", "ridge"): "R² return ridge",
    (study.SPACE, "direction_acc", "hybrid"): "direction hybrid",
    (study.SPACE, "majority_acc", "hybrid"): "majority",
    ("scaled", "r2", "hybrid"): "R² scaled hybrid", ("scaled", "r2", "ridge"): "R² scaled ridge",
    ("scaled", "r2", "ceiling"): "R² scaled ceiling",
    ("training", "fold_seconds", "hybrid"): "fold s", ("training", "epochs_run", "hybrid"): "epochs",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="1: one process; N ≥ 2: a LocalCluster of N processes (default: the cores)")
    parser.add_argument("--years", type=int, nargs="+", metavar="YEAR",
                        help=f"first and last test year (default {FIRST_YEAR} {LAST_YEAR}); "
                        "one: only that year")
    parser.add_argument("--epochs", type=int, help="most epochs per network (default: RunParams')")
    parser.add_argument("--scheduler", help="address of an existing dask scheduler, tcp://host:8786")
    parser.add_argument("--compare-workers", action="store_true",
                        help="run the years in one process and on the LocalCluster; compare wall times")
    args = parser.parse_args()
    if args.years and len(args.years) > 2:
        parser.error("--years takes a first and at most a last year")
    return args


def study_params(first: int, last: int, epochs: int | None) -> RunParams:
    """The run's parameters: default network, yearly folds on a rolling five-year window."""
    extra = {} if epochs is None else {"epochs": epochs}
    return RunParams(run_id="study", source="sample", start=DATA_START, end=f"{last}-12-31",
                     walk_forward_unit="year", walk_forward_train="rolling",
                     walk_forward_train_years=TRAIN_YEARS, walk_forward_first_year=first, **extra)


def year_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per test year: the ICs, R² and direction scores, and the fold's seconds."""
    values = frame.set_index(["space", "metric", "predictor", "label"])["value"].sort_index()
    table = pd.DataFrame({name: values.loc[key] for key, name in YEAR_COLUMNS.items()
                          if key in values.index})
    return table.astype({"fold s": int, "epochs": int})


def table_lines(table: pd.DataFrame, digits: int) -> list[str]:
    """A frame as a Markdown table, its index as the first column."""
    def cell(value) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| | " + " | ".join(map(str, table.columns)) + " |", "|---" * (len(table.columns) + 1) + "|"]
    lines += ["| " + " | ".join([str(index), *map(cell, row)]) + " |"
              for index, row in zip(table.index, table.itertuples(index=False), strict=True)]
    return lines


def markdown(command: str, params: RunParams, frame: pd.DataFrame, run: dict) -> str:
    years = year_table(frame)
    overall = study.overall(frame)
    failed = frame.attrs.get("failed", {})
    lines = [f"`{command}`: test years {years.index[0]} to {years.index[-1]}, each trained on the "
             f"{params.walk_forward_train_years} calendar years before it (rolling), "
             f"{len(years)} fold(s) in {run['wall_seconds']:.0f} s wall "
             f"({run['where']}; median fold {years['fold s'].median():.0f} s), "
             f"{os.cpu_count()} CPU cores, at most {params.epochs} epochs.", "",
             *table_lines(years, 4), "",
             "Over all years (IC: mean of the yearly means, t over years; direction pooled):", "",
             *table_lines(overall, 4), "", study.verdict(frame)]
    if failed:
        lines += ["", "Failed folds: " + "; ".join(f"{label}: {error}" for label, error in failed.items())]
    return "\n".join(lines)


def run_study(prices: pd.DataFrame, params: RunParams, workers: int,
              scheduler: str | None) -> tuple[pd.DataFrame, dict]:
    """Every fold of the study, and where and in how many seconds it ran."""
    arrays, _, _ = preprocess.build_dataset(prices, params)
    where = (f"dask cluster at {scheduler}" if scheduler else
             f"dask LocalCluster of {workers} processes" if workers >= 2 else "one process")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        frame = walkforward.walk_forward(prices, arrays, params, Path(work), verbose=0,
                                         workers=workers, scheduler=scheduler)
    return frame, {"wall_seconds": time.perf_counter() - start, "workers": workers, "scheduler": scheduler,
                   "where": where, "cpu_cores": os.cpu_count()}


def compare_workers(command: str, prices: pd.DataFrame, params: RunParams, workers: int) -> None:
    """The same folds in one process and on a LocalCluster of `workers`: wall times, and the
    largest difference between the two runs' scores (each fold's network in a process of its own
    is the network its seed gives, so there should be none beyond float noise)."""
    runs = {n: run_study(prices, params, n, None) for n in (1, workers)}
    keys = ["label", "space", "predictor", "metric"]
    scores = {n: frame[frame["space"] != "training"].set_index(keys)["value"]
              for n, (frame, _) in runs.items()}
    gap = float((scores[1] - scores[workers]).abs().max())
    folds = len(runs[1][0]["label"].unique())
    lines = [f"`{command}`: {folds} yearly folds, {os.cpu_count()} CPU cores.", "",
             "| where | wall (s) | ratio |", "|---|---|---|"]
    base = runs[1][1]["wall_seconds"]
    lines += [f"| {run['where']} | {run['wall_seconds']:.0f} | {run['wall_seconds'] / base:.2f} |"
              for _, run in runs.values()]
    lines += ["", f"Largest difference between the two runs' scores: {gap:.2g}."]
    save_results("study_workers", {"command": command, "runs": [run for _, run in runs.values()],
                                   "largest_score_difference": gap}, "\n".join(lines))


def main() -> None:
    args = parse_args()
    first, last = (args.years[0], args.years[-1]) if args.years else (FIRST_YEAR, LAST_YEAR)
    params = study_params(first, last, args.epochs)
    prices = collect.collect_prices(params).prices
    python = Path(sys.executable)
    shown = python.relative_to(paths.REPO_ROOT) if python.is_relative_to(paths.REPO_ROOT) else python.name
    command = shlex.join([str(shown), "benchmarks/study.py", *sys.argv[1:]])
    if args.compare_workers:
        compare_workers(command, prices, params, max(2, args.workers))
        return
    frame, run = run_study(prices, params, 1 if args.scheduler else args.workers, args.scheduler)
    results = {"command": command, **run, "params": params.model_dump(), **walkforward.record(frame)}
    save_results("study", results, markdown(command, params, frame, run))


if __name__ == "__main__":
    main()
