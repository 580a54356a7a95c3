"""Forecasts several days ahead, two ways, scored by horizon on the same test origins.

- recursive (the guide's `predict_multi_step`): the one-day model predicts, its forecast is
  appended to the window as if observed, and the window rolls on. With the raw returns as a
  second input, the day's raw return is the one the forecast implies: a w-day mean s_t
  that shares w-1 known returns gives r_t = w·s_t − (r_{t-w+1} + … + r_{t-1}). With the raw
  return as the target (`target: raw`) the forecast is r_t itself, and the smoothed input is
  the mean of the last w returns.
- direct: one network per horizon h, trained on the target h days ahead. Its training and
  validation windows are trimmed so that no target reaches past the end of their period.

Baselines per horizon: persistence (the last smoothed value), the training mean and the
shared ridge regression fitted for that horizon.
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from roicast.config import RunParams
from roicast.evaluation.metrics import regression_metrics
from roicast.features.dataset import Dataset
from roicast.features.preprocess import scaler_from_dict, to_roi_pct
from roicast.models import baselines, training
from roicast.models.forecaster import fit_predict


def origins(indices: np.ndarray, steps: int) -> np.ndarray:
    """Test origins whose every horizon up to `steps` has a target."""
    return np.asarray(indices)[: len(indices) - (steps - 1)]


def for_horizon(dataset: Dataset, horizon: int) -> Dataset:
    """The dataset for training on the target `horizon` days ahead, periods kept apart."""
    trim = horizon - 1
    return dataset.replace(horizon=horizon, train_idx=dataset.train_idx[: len(dataset.train_idx) - trim],
                           val_idx=dataset.val_idx[: len(dataset.val_idx) - trim])


def starting_point(dataset: Dataset, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a recursive forecast from each of `indices` starts: its window, shaped
    (n, seq_len, assets, features), and the raw returns inside its last smoothed mean,
    (n, smooth_window - 1, assets). Starting points of several datasets built alike stack."""
    rows = np.asarray(indices)[:, None] + np.arange(-(dataset.smooth_window - 1), 0)
    return np.array(dataset.windows(indices)), dataset.raw_pct[rows]


def recursive_forecast(model, dataset: Dataset, scalers: dict, indices: np.ndarray,
                       steps: int) -> np.ndarray:
    """Scaled forecasts shaped (steps, len(indices), assets), each step fed back as input."""
    return roll_forward(model, dataset, scalers, *starting_point(dataset, indices), steps)


def roll_forward(model, dataset: Dataset, scalers: dict, windows: np.ndarray, known_raw: np.ndarray,
                 steps: int) -> np.ndarray:
    """`recursive_forecast` from given starting points (`starting_point`'s), shaped
    (steps, len(windows), assets); `dataset` gives only the layout (features, smoothing, target).

    `model` is a Keras model or anything with its `predict_on_batch`: one graph for all the
    origins, traced once per batch shape; Keras's `predict` retraces for every new batch size,
    which cost more than the forecasts themselves in 06.
    """
    seq_len, window = dataset.seq_len, dataset.smooth_window
    raw_target = dataset.target_of == "raw"
    names = [str(name) for name in dataset.feature_names]
    feature_scalers = {name: scaler_from_dict(scalers["features"][name]) for name in names}
    n, _, n_assets, n_features = windows.shape
    forecasts = []
    for _ in range(steps):
        predicted = np.asarray(model.predict_on_batch(windows.reshape(n, seq_len, n_assets * n_features)))
        predicted = predicted[:, :n_assets]  # a distribution network's location; its scale is not rolled
        forecasts.append(predicted)
        predicted_pct = to_roi_pct(predicted, scalers)
        implied_raw = predicted_pct if raw_target else window * predicted_pct - known_raw.sum(axis=1)
        new_row = np.empty((n, n_assets, n_features), dtype=windows.dtype)
        for k, name in enumerate(names):
            if name == "raw":
                new_row[:, :, k] = feature_scalers["raw"].transform(implied_raw)
            elif raw_target:
                smoothed_pct = (known_raw.sum(axis=1) + implied_raw) / window
                new_row[:, :, k] = feature_scalers["smoothed"].transform(smoothed_pct)
            else:
                new_row[:, :, k] = predicted
        windows = np.concatenate([windows[:, 1:], new_row[:, None]], axis=1)
        known_raw = np.concatenate([known_raw[:, 1:], implied_raw[:, None]], axis=1)
    return np.stack(forecasts)


def direct_forecasts(first_model, dataset: Dataset, params: RunParams, indices: np.ndarray,
                     steps: int, work_root: Path, verbose: int = 2) -> np.ndarray:
    """Scaled forecasts shaped (steps, len(indices), assets), one network per horizon.

    Horizon 1 is the chain's model; each further horizon trains its own, all on one traced graph.
    """
    forecasts, networks = [training.predict(first_model, dataset, indices)], training.CompiledNetworks()
    for horizon in range(2, steps + 1):
        print(f"direct model for horizon {horizon}", flush=True)
        shifted = for_horizon(dataset, horizon)
        with tempfile.TemporaryDirectory(dir=work_root) as work:
            network = training.Network(params, Path(work), verbose=verbose, networks=networks)
            network.fit(shifted, shifted.train_idx)
            forecasts.append(network.predict(dataset, indices))
    return np.stack(forecasts)


def baseline_forecasts(dataset: Dataset, indices: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """Persistence, training mean and a ridge per horizon, each shaped (steps, n, assets)."""
    last = baselines.Persistence().predict(dataset, indices)
    per_horizon = [fit_predict({"train_mean": baselines.TrainMean(), "ridge": baselines.SharedRidge()},
                               shifted, shifted.train_idx, indices)
                   for shifted in (for_horizon(dataset, horizon) for horizon in range(1, steps + 1))]
    stacked = {name: np.stack([forecasts[name] for forecasts in per_horizon])
               for name in ("train_mean", "ridge")}
    return {"persistence": np.broadcast_to(last, (steps, *last.shape)), **stacked}


def error_by_horizon(dataset: Dataset, scalers: dict, forecasts: dict[str, np.ndarray],
                     indices: np.ndarray) -> pd.DataFrame:
    """MAE, RMSE and R² of every predictor at every horizon, scaled and in ROI percent."""
    records = []
    for step in range(next(iter(forecasts.values())).shape[0]):
        ahead = dataset.replace(horizon=step + 1)
        actual, actual_pct = ahead.target_rows(indices), ahead.target_rows(indices, "target_pct")
        for name, values in forecasts.items():
            for space, truth, predicted in (("scaled", actual, values[step]),
                                            ("roi_pct", actual_pct, to_roi_pct(values[step], scalers))):
                records.append({"horizon": step + 1, "predictor": name, "space": space,
                                **regression_metrics(truth, predicted)})
    return pd.DataFrame.from_records(records)


def by_horizon(errors: pd.DataFrame, space: str, metric: str) -> pd.DataFrame:
    """`metric` of each predictor (rows) at each horizon (columns), from error_by_horizon."""
    return errors[errors["space"] == space].pivot(index="predictor", columns="horizon", values=metric)


def compare(model, dataset: Dataset, scalers: dict, params: RunParams, indices: np.ndarray,
            work_root: Path, verbose: int = 2) -> pd.DataFrame:
    """Recursive, direct and baseline forecasts up to `params.horizon_steps` days, scored by horizon."""
    steps = params.horizon_steps
    chosen = origins(indices, steps)
    forecasts = {
        "recursive": recursive_forecast(model, dataset, scalers, chosen, steps),
        "direct": direct_forecasts(model, dataset, params, chosen, steps, work_root, verbose),
        **baseline_forecasts(dataset, chosen, steps),
    }
    return error_by_horizon(dataset, scalers, forecasts, chosen)
