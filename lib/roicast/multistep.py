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

from roicast import baselines, training
from roicast.config import RunParams
from roicast.metrics import regression_metrics
from roicast.preprocess import scaler_from_dict, target_of, to_roi_pct
from roicast.windows import make_windows, targets_for


def origins(indices: np.ndarray, steps: int) -> np.ndarray:
    """Test origins whose every horizon up to `steps` has a target."""
    return np.asarray(indices)[: len(indices) - (steps - 1)]


def for_horizon(arrays: dict, horizon: int) -> dict:
    """dataset arrays for training on the target `horizon` days ahead, periods kept apart."""
    trim = horizon - 1
    return {**arrays, "horizon": np.array(horizon),
            "train_idx": arrays["train_idx"][: len(arrays["train_idx"]) - trim],
            "val_idx": arrays["val_idx"][: len(arrays["val_idx"]) - trim]}


def recursive_forecast(model, arrays: dict, scalers: dict, indices: np.ndarray,
                       steps: int) -> np.ndarray:
    """Scaled forecasts shaped (steps, len(indices), assets), each step fed back as input.

    `model` is a Keras model or anything with its `predict_on_batch`: one graph for all the
    origins, traced once per shape; Keras's `predict` retraces for every new batch size, which
    cost more than the forecasts themselves in 06.
    """
    seq_len, window = int(arrays["seq_len"]), int(arrays["smooth_window"])
    raw_target = target_of(arrays) == "raw"
    names = [str(name) for name in arrays["feature_names"]]
    windows = np.array(make_windows(arrays["features"], indices, seq_len))
    feature_scalers = {name: scaler_from_dict(scalers["features"][name]) for name in names}
    rows = np.asarray(indices)[:, None] + np.arange(-(window - 1), 0)
    known_raw = arrays["raw_pct"][rows]  # (n, window - 1, assets): the returns inside the mean
    n, _, n_assets, n_features = windows.shape
    forecasts = []
    for _ in range(steps):
        predicted = np.asarray(model.predict_on_batch(windows.reshape(n, seq_len, n_assets * n_features)))
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


def direct_forecasts(first_model, arrays: dict, params: RunParams, indices: np.ndarray,
                     steps: int, work_root: Path, verbose: int = 2) -> np.ndarray:
    """Scaled forecasts shaped (steps, len(indices), assets), one network per horizon.

    Horizon 1 is the chain's model; each further horizon trains its own.
    """
    forecasts = [training.predict(first_model, arrays, indices)]
    for horizon in range(2, steps + 1):
        print(f"direct model for horizon {horizon}", flush=True)
        with tempfile.TemporaryDirectory(dir=work_root) as work:
            result = training.train(for_horizon(arrays, horizon), params, Path(work), verbose=verbose)
            forecasts.append(training.predict(result.model, arrays, indices))
    return np.stack(forecasts)


def baseline_forecasts(arrays: dict, indices: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """Persistence, training mean and a ridge per horizon, each shaped (steps, n, assets)."""
    target, seq_len = arrays["target"], int(arrays["seq_len"])
    last = baselines.persistence(target, indices)
    ridge, mean = [], []
    for horizon in range(1, steps + 1):
        shifted = for_horizon(arrays, horizon)
        model = baselines.SharedRidge(seq_len, horizon).fit(arrays["features"], target,
                                                            shifted["train_idx"])
        ridge.append(model.predict(arrays["features"], indices))
        mean.append(baselines.train_mean(target, shifted["train_idx"], indices, horizon))
    return {"persistence": np.broadcast_to(last, (steps, *last.shape)),
            "train_mean": np.stack(mean), "ridge": np.stack(ridge)}


def error_by_horizon(arrays: dict, scalers: dict, forecasts: dict[str, np.ndarray],
                     indices: np.ndarray) -> pd.DataFrame:
    """MAE, RMSE and R² of every predictor at every horizon, scaled and in ROI percent."""
    records = []
    for step in range(next(iter(forecasts.values())).shape[0]):
        actual = targets_for(arrays["target"], indices, step + 1)
        actual_pct = targets_for(arrays["target_pct"], indices, step + 1)
        for name, values in forecasts.items():
            for space, truth, predicted in (("scaled", actual, values[step]),
                                            ("roi_pct", actual_pct, to_roi_pct(values[step], scalers))):
                records.append({"horizon": step + 1, "predictor": name, "space": space,
                                **regression_metrics(truth, predicted)})
    return pd.DataFrame.from_records(records)


def by_horizon(errors: pd.DataFrame, space: str, metric: str) -> pd.DataFrame:
    """`metric` of each predictor (rows) at each horizon (columns), from error_by_horizon."""
    return errors[errors["space"] == space].pivot(index="predictor", columns="horizon", values=metric)


def compare(model, arrays: dict, scalers: dict, params: RunParams, indices: np.ndarray,
            work_root: Path, verbose: int = 2) -> pd.DataFrame:
    """Recursive, direct and baseline forecasts up to `params.horizon_steps` days, scored by horizon."""
    steps = params.horizon_steps
    chosen = origins(indices, steps)
    forecasts = {
        "recursive": recursive_forecast(model, arrays, scalers, chosen, steps),
        "direct": direct_forecasts(model, arrays, params, chosen, steps, work_root, verbose),
        **baseline_forecasts(arrays, chosen, steps),
    }
    return error_by_horizon(arrays, scalers, forecasts, chosen)
