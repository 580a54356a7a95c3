"""Score every predictor on the same test windows, in the scaled space and in ROI percent.

The network's numbers mean something only beside baselines that see the same windows:
persistence, the window mean, the training mean, a shared ridge regression, and the
ceiling that knows the already-observed days of the smoothed target. A raw target
(tomorrow's return itself) has its own baselines and no ceiling; the direction task is
scored against the majority class. `score_models` picks what fits the run, so 04_evaluate
reads the same for every task and target.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from roicast import plots
from roicast.config import RunParams
from roicast.evaluation.metrics import (
    classification_metrics,
    headroom_share,
    regression_metrics,
    skill_score,
)
from roicast.evaluation.significance import (
    binomial_direction_test,
    diebold_mariano,
    information_coefficient,
)
from roicast.features.dataset import Dataset
from roicast.features.preprocess import direction_labels, to_roi_pct
from roicast.models import baselines, forecaster
from roicast.models.forecaster import fit_predict
from roicast.runs import store
from roicast.runs.artefacts import write_json, write_parquet
from roicast.task import task_of

SPACES = ("scaled", "roi_pct")


def direction_accuracy(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Share of forecasts with the sign of the actual value; NaN for a forecast that is zero
    throughout (the zero baseline of a raw target), which has no direction to score."""
    predicted = np.asarray(predicted)
    if not np.any(predicted):
        return float("nan")
    return float(np.mean(np.sign(predicted) == np.sign(np.asarray(actual))))


def baseline_forecasts(dataset: Dataset, scalers: dict, indices: np.ndarray,
                       plugins: list[str] | tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Scaled forecasts for `indices` of every registered forecaster that fits the dataset's
    target (`forecaster.for_dataset`, with the run's `model_plugins`), each fitted on the
    training samples."""
    return fit_predict(forecaster.for_dataset(dataset, scalers, plugins), dataset, dataset.train_idx, indices)


def error_overlap(dataset: Dataset) -> int:
    """Days two neighbouring forecast errors share: the smoothing window's overlap plus the horizon's
    for the smoothed target, the horizon's alone for a raw one or a sum, whose horizon spans its
    days (the Diebold–Mariano lag)."""
    horizon = dataset.horizon
    return horizon if dataset.target_of in ("raw", "sum") else dataset.smooth_window + horizon - 1


def in_both_spaces(forecasts: dict[str, np.ndarray], scalers: dict) -> dict[str, dict]:
    return {"scaled": forecasts,
            "roi_pct": {name: to_roi_pct(values, scalers) for name, values in forecasts.items()}}


def score(dataset: Dataset, scalers: dict, forecasts: dict[str, np.ndarray],
          indices: np.ndarray) -> dict[str, dict[str, dict]]:
    """metrics[space][predictor] = mae, rmse, r2, direction_acc (+ skill and headroom).

    direction_acc is the share of days × assets where the forecast's ROI has the sign of
    the actual target's ROI (smoothed or raw); it is the same in both spaces.
    """
    actual = {"scaled": dataset.target_rows(indices), "roi_pct": dataset.target_rows(indices, "target_pct")}
    spaces = in_both_spaces(forecasts, scalers)
    result: dict[str, dict[str, dict]] = {}
    for space in SPACES:
        result[space] = {}
        for name, predicted in spaces[space].items():
            values = regression_metrics(actual[space], predicted)
            values["direction_acc"] = direction_accuracy(spaces["roi_pct"][name], actual["roi_pct"])
            result[space][name] = values
        mse = {name: m["rmse"] ** 2 for name, m in result[space].items()}
        for name, values in result[space].items():
            values["skill_vs_persistence"] = skill_score(mse[name], mse["persistence"])
            if "ceiling" in mse:
                values["headroom_share"] = headroom_share(mse[name], mse["persistence"], mse["ceiling"])
    return result


def significance(dataset: Dataset, scalers: dict, forecasts: dict[str, np.ndarray],
                 indices: np.ndarray, model: str = "hybrid") -> dict:
    """Diebold–Mariano tests of `model` against persistence and ridge, and its information coefficient."""
    actual = dataset.target_rows(indices, "target_pct")
    roi = in_both_spaces(forecasts, scalers)["roi_pct"]
    lag = error_overlap(dataset)
    tests = {f"dm_vs_{other}": diebold_mariano(roi[model] - actual, roi[other] - actual, horizon=lag)
             for other in ("persistence", "ridge") if other in roi and other != model}
    next_return = dataset.target_rows(indices, "returns_pct")
    ic = {name: information_coefficient(values, next_return) for name, values in roi.items()}
    tests["information_coefficient"] = {name: {k: v for k, v in values.items() if k != "daily"}
                                        for name, values in ic.items()}
    return tests


def tomorrow_scores(actual: np.ndarray, forecast: np.ndarray, mean: np.ndarray,
                    majority_share: float) -> dict[str, float]:
    """How well forecasts of tomorrow's return (percent, days × assets) do against each asset's
    training-mean return: R², MAE, the daily rank IC with its t-statistic, direction accuracy with
    a binomial test against the majority class, and a Diebold–Mariano test against the mean
    (negative favours the forecast). One formula for the smoothed target's implied return and for
    a raw target's forecast, so the two read the same."""
    sse, sse_mean = np.sum((actual - forecast) ** 2), np.sum((actual - mean) ** 2)
    ic = information_coefficient(forecast, actual)
    correct = int(np.sum((forecast > 0) == (actual > 0)))
    direction = binomial_direction_test(correct, actual.size, majority_share)
    return {
        "r2_vs_train_mean": float(1 - sse / sse_mean), "mae": float(np.mean(np.abs(actual - forecast))),
        "ic_mean": ic["mean"], "ic_t": ic["t_stat"], "direction_acc": correct / actual.size,
        "majority_acc": majority_share,
        "p_direction_vs_majority": direction["p_value"],
        "dm_vs_train_mean": diebold_mariano(forecast - actual, mean - actual)}


def implied_return_pct(dataset: Dataset, forecast_pct: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Tomorrow's raw return (%) that a forecast of the target (%) at sample `indices` implies:
    w·forecast − (the w − 1 returns already known) for a w-day mean, the forecast itself for a
    raw target."""
    if dataset.target_of == "raw":
        return forecast_pct
    window = dataset.smooth_window
    return window * (forecast_pct - baselines.known_part(dataset.raw_pct, indices, window))


def unknown_part(dataset: Dataset, scalers: dict, forecasts: dict[str, np.ndarray],
                 indices: np.ndarray) -> dict[str, dict]:
    """How well each forecast predicts tomorrow's own return, the only part not yet known: its
    `implied_return_pct`, scored per predictor by `tomorrow_scores`, the training mean being the
    reference."""
    raw_target = dataset.target_of == "raw"
    if dataset.target_of == "sum" or not raw_target and (dataset.smooth_window < 2 or dataset.horizon != 1):
        return {}
    indices = np.asarray(indices)
    raw = dataset.raw_pct
    actual, train = dataset.target_rows(indices, raw), dataset.target_rows(dataset.train_idx, raw)
    mean = train.mean(axis=0)
    majority = (train > 0).mean(axis=0) >= 0.5
    majority_share = float(np.mean((actual > 0) == majority))
    reference = ("train_mean",) if raw_target else ("ceiling", "train_mean", "window_mean")
    return {name: tomorrow_scores(actual, implied_return_pct(dataset, values, indices), mean, majority_share)
            for name, values in in_both_spaces(forecasts, scalers)["roi_pct"].items()
            if name not in reference}


def unknown_part_table(tests: dict) -> pd.DataFrame:
    """unknown_part's scores, one row per predictor, with the Diebold–Mariano statistic and p-value."""
    rows = {name: {**{k: v for k, v in t.items() if k != "dm_vs_train_mean"},
                   "dm_statistic": t["dm_vs_train_mean"]["statistic"],
                   "dm_p_value": t["dm_vs_train_mean"]["p_value"]} for name, t in tests.items()}
    return pd.DataFrame(rows).T


def unknown_part_verdict(tests: dict, model: str = "hybrid", target: str = "smoothed") -> str:
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
               "No evidence of skill on tomorrow's return." if target == "raw" else
               "No evidence of skill on the unknown part: its value comes from the days already known."))


def predictions_frame(dataset: Dataset, scalers: dict, forecasts: dict[str, np.ndarray],
                      indices: np.ndarray) -> pd.DataFrame:
    """Long table: date, asset, actual and every predictor, scaled and in ROI percent."""
    dates, assets = dataset.target_rows(indices, "dates"), dataset.assets
    spaces = in_both_spaces({"actual": dataset.target_rows(indices), **forecasts}, scalers)
    columns = {}
    for name in spaces["scaled"]:
        columns[name] = spaces["scaled"][name].reshape(-1)
        columns[f"{name}_roi_pct"] = spaces["roi_pct"][name].reshape(-1)
    frame = pd.DataFrame(columns)
    frame.insert(0, "asset", np.tile(assets, len(dates)))
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
            values["direction_acc"] = direction_accuracy(group[f"{name}_roi_pct"], group["actual_roi_pct"])
            records.append({"asset": asset, "predictor": name, "space": space, **values})
    return pd.DataFrame.from_records(records)


def metrics_table(metrics: dict, space: str) -> pd.DataFrame:
    """metrics[space] as a frame, one row per predictor, best R² first."""
    return pd.DataFrame(metrics[space]).T.sort_values("r2", ascending=False)


def data_summary(dataset: Dataset, collect_info: dict) -> dict:
    """The `data` part of metrics.json."""
    first = dataset.target_rows(dataset.train_idx[:1], "dates")[0]
    last = dataset.target_rows(dataset.test_idx[-1:], "dates")[0]
    return {"source": collect_info.get("source"), "assets": dataset.assets.tolist(),
            "start": str(first), "end": str(last), "n_train": len(dataset.train_idx),
            "n_val": len(dataset.val_idx), "n_test": len(dataset.test_idx)}


def _direction_forecasts(dataset: Dataset, probabilities: dict[str, np.ndarray], indices: np.ndarray,
                         direction_of: str) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Test labels, the forecasts with the majority class added, and the majority's hit rate.

    The majority class is each asset's more frequent direction in the training period.
    """
    labels = direction_labels(dataset, indices, direction_of)
    train_labels = direction_labels(dataset, dataset.train_idx, direction_of)
    majority = (train_labels.mean(axis=0) >= 0.5).astype(float)
    forecasts = {**probabilities, "majority": np.broadcast_to(majority, labels.shape)}
    return labels, forecasts, float(np.mean(labels == majority))


def score_direction(dataset: Dataset, probabilities: dict[str, np.ndarray], indices: np.ndarray,
                    direction_of: str) -> dict[str, dict]:
    """Accuracy, precision, recall, ROC AUC of each up/down forecaster, beside the majority class.

    A binomial test asks whether a forecaster's accuracy beats the majority class's.
    """
    labels, forecasts, majority_share = _direction_forecasts(dataset, probabilities, indices,
                                                             direction_of)
    result = {}
    for name, probs in forecasts.items():
        values = classification_metrics(labels, probs)
        correct = int(np.sum((probs >= 0.5) == (labels == 1)))
        test = binomial_direction_test(correct, labels.size, majority_share)
        result[name] = {**values, "p_value_vs_majority": test["p_value"]}
    return result


def direction_per_asset(dataset: Dataset, probabilities: dict[str, np.ndarray], indices: np.ndarray,
                        direction_of: str) -> pd.DataFrame:
    """Accuracy, precision, recall and ROC AUC per asset and forecaster (majority class included)."""
    labels, forecasts, _ = _direction_forecasts(dataset, probabilities, indices, direction_of)
    records = [{"asset": asset, "predictor": name, "space": "classification",
                **classification_metrics(labels[:, k], probs[:, k])}
               for name, probs in forecasts.items() for k, asset in enumerate(dataset.assets)]
    return pd.DataFrame.from_records(records)


def direction_frame(dataset: Dataset, probabilities: dict[str, np.ndarray], indices: np.ndarray,
                    direction_of: str) -> pd.DataFrame:
    """Long table of the direction task: date, asset, the actual label (1: up) and each
    forecaster's probability of an up day, the majority class included."""
    labels, forecasts, _ = _direction_forecasts(dataset, probabilities, indices, direction_of)
    dates, assets = dataset.target_rows(indices, "dates"), dataset.assets
    frame = pd.DataFrame({"actual": labels.reshape(-1),
                          **{name: np.asarray(values).reshape(-1) for name, values in forecasts.items()}})
    frame.insert(0, "asset", np.tile(assets, len(dates)))
    frame.insert(0, "date", pd.to_datetime(np.repeat(dates, len(assets))))
    return frame


SHOWN = ("hybrid", "ridge", "persistence")  # the forecasts drawn in the figures, where present


@dataclass
class Evaluation:
    """Everything 04_evaluate shows and saves about the network and its baselines on one period.

    Built by `score_models` for the run's task and target; a section that does not apply to the
    run (regression scores of the direction task, say) says so in one line instead of a table.
    """

    task: str
    target: str
    forecasts: dict[str, np.ndarray]  # scaled regression forecasts, the network's first; {} for direction
    metrics: dict  # metrics[space][predictor]; {} for direction
    frame: pd.DataFrame  # predictions_frame, or direction_frame for the direction task
    per_asset: pd.DataFrame  # per_asset_table in both spaces, or direction_per_asset
    significance: dict = field(default_factory=dict)
    unknown_part: dict = field(default_factory=dict)
    classification: dict | None = None  # score_direction's, for the direction task

    def _regression_only(self) -> bool:
        """Whether the regression sections apply; says so when they do not."""
        if task_of(self.task).classifies:
            print("The direction task has no regression forecasts: its network is scored in "
                  "'The direction task'.")
            return False
        return True

    def table(self, space: str) -> pd.DataFrame | None:
        """metrics[space], one row per predictor, best R² first, to 4 decimals (the tables below
        are for reading; the saved numbers are unrounded)."""
        return metrics_table(self.metrics, space).round(4) if self._regression_only() else None

    def significance_table(self) -> pd.DataFrame | None:
        """Print the Diebold–Mariano tests; the information coefficients, one row per predictor."""
        if not self._regression_only():
            return None
        for name, result in self.significance.items():
            if name.startswith("dm_"):
                verdict = "significant" if result["p_value"] < 0.05 else "not significant at 5 %"
                print(f"{name}: statistic {result['statistic']:+.2f}, p = {result['p_value']:.3g} "
                      f"({verdict})")
        return pd.DataFrame(self.significance.get("information_coefficient", {})).T.round(4)

    def unknown_part_table(self) -> pd.DataFrame | None:
        """Print the verdict on tomorrow's own return; the scores of every predictor."""
        if not self._regression_only():
            return None
        print(unknown_part_verdict(self.unknown_part, target=self.target))
        return unknown_part_table(self.unknown_part).round(4) if self.unknown_part else None

    def classification_table(self) -> pd.DataFrame | None:
        """The direction task's scores, one row per forecaster (the majority class included)."""
        if self.classification is None:
            print("03_train fitted the regression task; nothing to score here.")
            return None
        return pd.DataFrame(self.classification).T.round(4)

    def accuracy_by_asset(self) -> pd.DataFrame | None:
        """The direction task's accuracy per asset (rows) and forecaster (columns)."""
        if self.classification is None:
            return None
        return self.per_asset.pivot(index="asset", columns="predictor", values="accuracy").round(3)

    def plot_per_asset(self) -> Figure:
        """MAE (ROI %) per asset and predictor; for the direction task, accuracy."""
        if self.classification is not None:
            return plots.plot_error_heatmap(self.per_asset, "accuracy")
        return plots.plot_error_heatmap(self.per_asset[self.per_asset["space"] == "roi_pct"])

    def shown(self) -> list[str]:
        """The forecasts the figures draw: the network, the ridge and persistence, where present."""
        return [name for name in SHOWN if name in self.forecasts]

    def plot_forecasts(self) -> Figure | None:
        """Actual and forecast ROI over the period, one panel per asset."""
        return plots.plot_forecast_grid(self.frame, self.shown()) if self._regression_only() else None

    def plot_residuals(self) -> Figure | None:
        """Distribution of each shown forecast's errors."""
        return plots.plot_residuals(self.frame, self.shown()) if self._regression_only() else None

    def plot_skill(self) -> Figure | None:
        """Every predictor's MSE skill against persistence (ROI %)."""
        return plots.plot_skill(metrics_table(self.metrics, "roi_pct")) if self._regression_only() else None

    def record(self, **parts) -> dict:
        """evaluation.json's content: these scores, plus `parts` (walk_forward, multi_step, data)."""
        return {"metrics": self.metrics, "significance": self.significance,
                "classification": self.classification, "unknown_part": self.unknown_part, **parts}

    def save(self, run_dir: Path, **parts) -> None:
        """Write predictions.parquet, metrics_per_asset.csv and evaluation.json (`record`'s)."""
        write_parquet(store.artefact_path(run_dir, "04_evaluate", store.PREDICTIONS), self.frame)
        self.per_asset.to_csv(store.artefact_path(run_dir, "04_evaluate", store.METRICS_PER_ASSET),
                              index=False)
        write_json(store.artefact_path(run_dir, "04_evaluate", store.EVALUATION), self.record(**parts))


def score_models(dataset: Dataset, scalers: dict, model_output: np.ndarray, params: RunParams,
                 indices: np.ndarray) -> Evaluation:
    """The network's output and the baselines that fit the run's task and target, scored on `indices`.

    Regression (smoothed or raw target): every metric in both spaces, the significance tests, the
    scores on tomorrow's own return and the per-asset tables. Direction: the network's
    probabilities against the majority class, overall and per asset.
    """
    if params.task_spec.classifies:
        probabilities = {"hybrid": model_output}
        return Evaluation(
            task=params.task, target=params.target, forecasts={}, metrics={},
            frame=direction_frame(dataset, probabilities, indices, params.direction_of),
            per_asset=direction_per_asset(dataset, probabilities, indices, params.direction_of),
            classification=score_direction(dataset, probabilities, indices, params.direction_of))
    others = baseline_forecasts(dataset, scalers, indices, params.model_plugins)
    forecasts = {"hybrid": model_output, **others}
    frame = predictions_frame(dataset, scalers, forecasts, indices)
    predictors = [name for name in forecasts if name != "ceiling"]
    return Evaluation(
        task=params.task, target=params.target, forecasts=forecasts,
        metrics=score(dataset, scalers, forecasts, indices), frame=frame,
        per_asset=pd.concat([per_asset_table(frame, predictors, space) for space in SPACES]),
        significance=significance(dataset, scalers, forecasts, indices),
        unknown_part=unknown_part(dataset, scalers, forecasts, indices))


def multi_step_off(params: RunParams) -> str | None:
    """Why the multi-step comparison does not run for these parameters, or None when it does."""
    if params.horizon_steps == 1:
        return "horizon_steps = 1: the multi-step comparison is off."
    if params.task_spec.classifies:
        return "The direction task forecasts one day: the multi-step comparison is off."
    if params.target == "sum":
        return "target='sum' forecasts its horizon_days at once: the multi-step comparison is off."
    return None


def multi_step(model, dataset: Dataset, scalers: dict, params: RunParams, indices: np.ndarray,
               work_root: Path) -> pd.DataFrame | None:
    """Recursive, direct and baseline errors by horizon (`multistep.compare`), or None, saying why,
    when the run has no multi-step comparison.

    `multistep` trains networks, so it is imported here: scoring alone never loads Keras.
    """
    from roicast.evaluation import multistep

    reason = multi_step_off(params)
    if reason:
        print(reason)
        return None
    return multistep.compare(model, dataset, scalers, params, indices, work_root)


def multi_step_table(errors: pd.DataFrame | None) -> pd.DataFrame | None:
    """RMSE (ROI %) of each predictor by horizon, with its figure; None when there is no comparison."""
    if errors is None:
        return None
    from roicast.evaluation import multistep

    plots.plot_error_by_horizon(errors, "roi_pct", "rmse")
    return multistep.by_horizon(errors, "roi_pct", "rmse").round(4)


def multi_step_record(errors: pd.DataFrame | None) -> list[dict] | None:
    """metrics.json's `multi_step` part: one record per horizon, predictor and space."""
    return None if errors is None else errors.to_dict(orient="records")
