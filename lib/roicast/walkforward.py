"""Walk-forward evaluation: retrain on an expanding window, test on the block that follows.

One test period is one draw of the market; the folds show how much the scores move from
one period to the next. Every fold refits everything that is fitted (clip bounds,
scalers, the network, the ridge baseline) on its own training period, so no fold sees its
test block. The last fold is the chain's own split.
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from roicast import evaluate, preprocess, training
from roicast.config import RunParams
from roicast.windows import sample_indices, walk_forward_splits


def fold_splits(arrays: dict, params: RunParams) -> list[dict[str, np.ndarray]]:
    """The folds over the samples of dataset.npz, oldest first."""
    samples = sample_indices(len(arrays["features"]), int(arrays["seq_len"]), int(arrays["horizon"]))
    gap = max(params.smooth_window, params.horizon)
    return walk_forward_splits(samples, params.walk_forward_folds, params.test_fraction,
                               params.val_fraction, gap)


def score_fold(arrays: dict, scalers: dict, model_output: np.ndarray,
               params: RunParams) -> dict[str, dict[str, dict]]:
    """metrics[space][predictor] of one fold's test block; space 'classification' for direction."""
    test_idx = arrays["test_idx"]
    if params.task == "direction":
        scores = evaluate.score_direction(arrays, {"hybrid": model_output}, test_idx,
                                          params.direction_of)
        return {"classification": scores}
    forecasts = {"hybrid": model_output, **evaluate.baseline_forecasts(arrays, scalers, test_idx)}
    return evaluate.score(arrays, scalers, forecasts, test_idx)


def walk_forward(prices: pd.DataFrame, arrays: dict, params: RunParams, work_root: Path,
                 verbose: int = 2) -> pd.DataFrame:
    """Train and score one network per fold; one row per fold, space, predictor and metric."""
    records = []
    splits = fold_splits(arrays, params)
    for fold, split in enumerate(splits, start=1):
        fold_arrays, scalers, info = preprocess.build_dataset(prices, params, split=split)
        test = info["periods"]["test"]
        print(f"fold {fold}/{len(splits)}: training to {info['periods']['train']['end']}, "
              f"testing {test['start']} to {test['end']}", flush=True)
        with tempfile.TemporaryDirectory(dir=work_root) as work:
            result = training.train(fold_arrays, params, Path(work), verbose=verbose)
            output = training.predict(result.model, fold_arrays, fold_arrays["test_idx"])
        for space, predictors in score_fold(fold_arrays, scalers, output, params).items():
            for predictor, values in predictors.items():
                records += [{"fold": fold, "test_start": test["start"], "test_end": test["end"],
                             "space": space, "predictor": predictor, "metric": metric,
                             "value": value} for metric, value in values.items()]
    return pd.DataFrame.from_records(records)


def summarise(folds: pd.DataFrame) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """summary[space][predictor][metric] = {"mean", "std"} across folds (std with ddof 1)."""
    stats = folds.groupby(["space", "predictor", "metric"])["value"].agg(["mean", "std"])
    summary: dict = {}
    for (space, predictor, metric), row in stats.iterrows():
        summary.setdefault(space, {}).setdefault(predictor, {})[metric] = {
            "mean": float(row["mean"]), "std": float(row["std"])}
    return summary


def record(folds: pd.DataFrame) -> dict:
    """metrics.json's `walk_forward` part: every fold's scores and their mean and spread."""
    return {"folds": folds.to_dict(orient="records"), "summary": summarise(folds)}


def summary_table(folds: pd.DataFrame, space: str, metric: str) -> pd.DataFrame:
    """One row per predictor: `metric` in each fold, then its mean and standard deviation."""
    chosen = folds[(folds["space"] == space) & (folds["metric"] == metric)]
    table = chosen.pivot(index="predictor", columns="fold", values="value")
    table.columns = [f"fold {fold}" for fold in table.columns]
    table["mean"], table["std"] = table.mean(axis=1), table.std(axis=1, ddof=1)
    return table.sort_values("mean", ascending=False)


def headline(task: str) -> tuple[str, str]:
    """The space and metric that summarise a fold: R² (scaled), or accuracy for direction."""
    return ("classification", "accuracy") if task == "direction" else ("scaled", "r2")
