"""Score every predictor on the same test windows, in the scaled space and in ROI percent.

The network's numbers mean something only beside baselines that see the same windows:
persistence, the window mean, the training mean, a shared ridge regression, and the
ceiling that knows the already-observed days of the smoothed target.
"""

import numpy as np
import pandas as pd

from roicast import baselines
from roicast.metrics import (
    classification_metrics,
    headroom_share,
    regression_metrics,
    skill_score,
)
from roicast.preprocess import direction_labels, scaler_from_dict, to_roi_pct
from roicast.significance import (
    binomial_direction_test,
    diebold_mariano,
    information_coefficient,
)
from roicast.windows import targets_for

SPACES = ("scaled", "roi_pct")


def baseline_forecasts(arrays: dict, scalers: dict, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Scaled forecasts of every baseline (and the ceiling when smoothing is on) for `indices`."""
    target, train_idx = arrays["target"], arrays["train_idx"]
    seq_len, horizon = int(arrays["seq_len"]), int(arrays["horizon"])
    ridge = baselines.SharedRidge(seq_len, horizon).fit(arrays["features"], target, train_idx)
    forecasts = {
        "persistence": baselines.persistence(target, indices),
        "window_mean": baselines.window_mean(target, indices, seq_len),
        "train_mean": baselines.train_mean(target, train_idx, indices, horizon),
        "ridge": ridge.predict(arrays["features"], indices),
    }
    smooth_window = int(arrays["smooth_window"])
    raw = baselines.raw_feature(arrays)
    if raw is not None and smooth_window > 1 and horizon == 1:
        decomposed = baselines.DecomposedRidge(seq_len, smooth_window).fit(arrays["features"], raw, train_idx)
        forecasts["ridge_decomposed"] = decomposed.predict(arrays["features"], indices)
    if smooth_window > 1 and horizon == 1:
        ceiling = baselines.ceiling_pct(arrays["raw_pct"], train_idx, indices, smooth_window)
        forecasts["ceiling"] = scaler_from_dict(scalers["target"]).transform(ceiling)
    return forecasts


def in_both_spaces(forecasts: dict[str, np.ndarray], scalers: dict) -> dict[str, dict]:
    return {"scaled": forecasts,
            "roi_pct": {name: to_roi_pct(values, scalers) for name, values in forecasts.items()}}


def score(arrays: dict, scalers: dict, forecasts: dict[str, np.ndarray],
          indices: np.ndarray) -> dict[str, dict[str, dict]]:
    """metrics[space][predictor] = mae, rmse, r2, direction_acc (+ skill and headroom).

    direction_acc is the share of days × assets where the forecast's ROI has the sign of
    the actual smoothed ROI; it is the same in both spaces.
    """
    horizon = int(arrays["horizon"])
    actual = {"scaled": targets_for(arrays["target"], indices, horizon)}
    actual["roi_pct"] = targets_for(arrays["target_pct"], indices, horizon)
    spaces = in_both_spaces(forecasts, scalers)
    result: dict[str, dict[str, dict]] = {}
    for space in SPACES:
        result[space] = {}
        for name, predicted in spaces[space].items():
            values = regression_metrics(actual[space], predicted)
            values["direction_acc"] = float(np.mean(
                np.sign(spaces["roi_pct"][name]) == np.sign(actual["roi_pct"])))
            result[space][name] = values
        mse = {name: m["rmse"] ** 2 for name, m in result[space].items()}
        for name, values in result[space].items():
            values["skill_vs_persistence"] = skill_score(mse[name], mse["persistence"])
            if "ceiling" in mse:
                values["headroom_share"] = headroom_share(mse[name], mse["persistence"], mse["ceiling"])
    return result


def significance(arrays: dict, scalers: dict, forecasts: dict[str, np.ndarray],
                 indices: np.ndarray, model: str = "hybrid") -> dict:
    """Diebold–Mariano tests of `model` against persistence and ridge, and its information coefficient."""
    horizon = int(arrays["horizon"])
    actual = targets_for(arrays["target_pct"], indices, horizon)
    roi = in_both_spaces(forecasts, scalers)["roi_pct"]
    lag = int(arrays["smooth_window"]) + horizon - 1
    tests = {f"dm_vs_{other}": diebold_mariano(roi[model] - actual, roi[other] - actual, horizon=lag)
             for other in ("persistence", "ridge") if other in roi and other != model}
    next_return = arrays["returns_pct"][np.asarray(indices) + horizon - 1]
    ic = {name: information_coefficient(values, next_return) for name, values in roi.items()}
    tests["information_coefficient"] = {name: {k: v for k, v in values.items() if k != "daily"}
                                        for name, values in ic.items()}
    return tests


def unknown_part(arrays: dict, scalers: dict, forecasts: dict[str, np.ndarray],
                 indices: np.ndarray) -> dict[str, dict]:
    """How well each forecast of the smoothed target predicts tomorrow's own return, the only part
    not yet known: the implied return w·forecast − (the w − 1 known returns), in percent.

    Per predictor: R² against each asset's training-mean return, MAE, the daily rank IC with its
    t-statistic, direction accuracy with a binomial test against the training majority, and a
    Diebold–Mariano test against the training mean (negative favours the predictor).
    """
    window, horizon = int(arrays["smooth_window"]), int(arrays["horizon"])
    if window < 2 or horizon != 1:
        return {}
    indices = np.asarray(indices)
    raw = arrays["raw_pct"]
    known = sum(raw[indices - k] for k in range(1, window))
    actual = raw[indices]
    mean = raw[arrays["train_idx"]].mean(axis=0)
    majority = (raw[arrays["train_idx"]] > 0).mean(axis=0) >= 0.5
    majority_share = float(np.mean((actual > 0) == majority))
    result = {}
    for name, values in in_both_spaces(forecasts, scalers)["roi_pct"].items():
        if name in ("ceiling", "train_mean", "window_mean"):
            continue
        implied = window * values - known
        sse, sse_mean = np.sum((actual - implied) ** 2), np.sum((actual - mean) ** 2)
        ic = information_coefficient(implied, actual)
        correct = int(np.sum((implied > 0) == (actual > 0)))
        direction = binomial_direction_test(correct, actual.size, majority_share)
        result[name] = {
            "r2_vs_train_mean": float(1 - sse / sse_mean), "mae": float(np.mean(np.abs(actual - implied))),
            "ic_mean": ic["mean"], "ic_t": ic["t_stat"], "direction_acc": correct / actual.size,
            "majority_acc": majority_share,
            "p_direction_vs_majority": direction["p_value"],
            "dm_vs_train_mean": diebold_mariano(implied - actual, mean - actual)}
    return result


def unknown_part_table(tests: dict) -> pd.DataFrame:
    """unknown_part's scores, one row per predictor, with the Diebold–Mariano statistic and p-value."""
    rows = {name: {**{k: v for k, v in t.items() if k != "dm_vs_train_mean"},
                   "dm_statistic": t["dm_vs_train_mean"]["statistic"],
                   "dm_p_value": t["dm_vs_train_mean"]["p_value"]} for name, t in tests.items()}
    return pd.DataFrame(rows).T


def unknown_part_verdict(tests: dict, model: str = "hybrid") -> str:
    """One sentence a reader can act on: does `model` forecast tomorrow's return better than its mean?"""
    if model not in tests:
        return "No forecast of tomorrow's own return to judge."
    t = tests[model]
    dm = t["dm_vs_train_mean"]
    better = dm["statistic"] < 0 and dm["p_value"] < 0.05
    return (f"On tomorrow's own return, {model} has R² {t['r2_vs_train_mean']:+.4f} against each asset's "
            f"training mean, rank IC {t['ic_mean']:+.4f} (t = {t['ic_t']:.2f}) and direction accuracy "
            f"{t['direction_acc']:.3f} against {t['majority_acc']:.3f} for the majority class "
            f"(p = {t['p_direction_vs_majority']:.3g}); Diebold–Mariano against the training mean "
            f"{dm['statistic']:+.2f} (p = {dm['p_value']:.3g}). "
            + ("It forecasts the unknown part better than the mean." if better else
               "No evidence of skill on the unknown part: its value comes from the days already known."))


def predictions_frame(arrays: dict, scalers: dict, forecasts: dict[str, np.ndarray],
                      indices: np.ndarray) -> pd.DataFrame:
    """Long table: date, asset, actual and every predictor, scaled and in ROI percent."""
    horizon = int(arrays["horizon"])
    rows = np.asarray(indices) + horizon - 1
    dates, assets = arrays["dates"][rows], arrays["assets"]
    spaces = in_both_spaces({"actual": targets_for(arrays["target"], indices, horizon), **forecasts},
                            scalers)
    columns = {}
    for name in spaces["scaled"]:
        columns[name] = spaces["scaled"][name].reshape(-1)
        columns[f"{name}_roi_pct"] = spaces["roi_pct"][name].reshape(-1)
    frame = pd.DataFrame(columns)
    frame.insert(0, "asset", np.tile(assets, len(rows)))
    frame.insert(0, "date", pd.to_datetime(np.repeat(dates, len(assets))))
    return frame


def per_asset_table(frame: pd.DataFrame, predictors: list[str], space: str = "roi_pct") -> pd.DataFrame:
    """MAE, RMSE, R² and direction accuracy per asset and predictor, from predictions_frame."""
    suffix = "_roi_pct" if space == "roi_pct" else ""
    records = []
    for asset, group in frame.groupby("asset", sort=False):
        actual = group[f"actual{suffix}"].to_numpy()[:, None]
        for name in predictors:
            values = regression_metrics(actual, group[f"{name}{suffix}"].to_numpy()[:, None])
            values["direction_acc"] = float(np.mean(
                np.sign(group[f"{name}_roi_pct"]) == np.sign(group["actual_roi_pct"])))
            records.append({"asset": asset, "predictor": name, "space": space, **values})
    return pd.DataFrame.from_records(records)


def metrics_table(metrics: dict, space: str) -> pd.DataFrame:
    """metrics[space] as a frame, one row per predictor, best R² first."""
    return pd.DataFrame(metrics[space]).T.sort_values("r2", ascending=False)


def data_summary(arrays: dict, collect_info: dict) -> dict:
    """The `data` part of metrics.json."""
    horizon = int(arrays["horizon"])
    first = arrays["dates"][arrays["train_idx"][0] + horizon - 1]
    last = arrays["dates"][arrays["test_idx"][-1] + horizon - 1]
    return {"source": collect_info.get("source"), "assets": arrays["assets"].tolist(),
            "start": str(first), "end": str(last), "n_train": len(arrays["train_idx"]),
            "n_val": len(arrays["val_idx"]), "n_test": len(arrays["test_idx"])}


def _direction_forecasts(arrays: dict, probabilities: dict[str, np.ndarray], indices: np.ndarray,
                         direction_of: str) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Test labels, the forecasts with the majority class added, and the majority's hit rate.

    The majority class is each asset's more frequent direction in the training period.
    """
    labels = direction_labels(arrays, indices, direction_of)
    train_labels = direction_labels(arrays, arrays["train_idx"], direction_of)
    majority = (train_labels.mean(axis=0) >= 0.5).astype(float)
    forecasts = {**probabilities, "majority": np.broadcast_to(majority, labels.shape)}
    return labels, forecasts, float(np.mean(labels == majority))


def score_direction(arrays: dict, probabilities: dict[str, np.ndarray], indices: np.ndarray,
                    direction_of: str) -> dict[str, dict]:
    """Accuracy, precision, recall, ROC AUC of each up/down forecaster, beside the majority class.

    A binomial test asks whether a forecaster's accuracy beats the majority class's.
    """
    labels, forecasts, majority_share = _direction_forecasts(arrays, probabilities, indices,
                                                             direction_of)
    result = {}
    for name, probs in forecasts.items():
        values = classification_metrics(labels, probs)
        correct = int(np.sum((probs >= 0.5) == (labels == 1)))
        test = binomial_direction_test(correct, labels.size, majority_share)
        result[name] = {**values, "p_value_vs_majority": test["p_value"]}
    return result


def direction_per_asset(arrays: dict, probabilities: dict[str, np.ndarray], indices: np.ndarray,
                        direction_of: str) -> pd.DataFrame:
    """Accuracy, precision, recall and ROC AUC per asset and forecaster (majority class included)."""
    labels, forecasts, _ = _direction_forecasts(arrays, probabilities, indices, direction_of)
    records = [{"asset": asset, "predictor": name, "space": "classification",
                **classification_metrics(labels[:, k], probs[:, k])}
               for name, probs in forecasts.items() for k, asset in enumerate(arrays["assets"])]
    return pd.DataFrame.from_records(records)
