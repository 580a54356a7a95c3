"""Naive forecasts on exactly the model's windows, and the ceiling no honest model can pass.

Every baseline is a registered `Forecaster`: fitted on some samples of a `Dataset`, it predicts
the scaled target of others from the same inputs the network sees, so their metrics are directly
comparable with the network's. Each says which targets it applies to (`forecaster.for_dataset`
picks them):

- the smoothed target: persistence, window mean, training mean, ridge, and with smoothing (at
  horizon 1) the decomposed ridge (when the raw feature shares the target's scale) and the
  ceiling;
- a raw target: zero, the training mean, yesterday's return (persistence) and the ridge; no
  ceiling (no part of tomorrow's return is known today) and no window mean (a smoothed value,
  not a forecast of one day);
- a 'sum' target (the next horizon_days days): the raw target's, persistence being the last
  such sum (momentum).

06 forecasts the days after the data with the ridge and persistence (`in_forecast`).
"""

import warnings

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import TimeSeriesSplit
from threadpoolctl import threadpool_limits

from roicast.features.dataset import Dataset
from roicast.features.preprocess import scaler_from_dict
from roicast.models.forecaster import Forecaster, register

RIDGE_ALPHAS = np.logspace(-3, 4, 15)


def _point_target(dataset: Dataset) -> bool:
    """The target is a smoothed mean of single days, not one day's return or a sum of days."""
    return dataset.target_of not in ("raw", "sum")


def _smoothing(dataset: Dataset) -> bool:
    """Part of the smoothed target is already known when the forecast is made."""
    return _point_target(dataset) and dataset.smooth_window > 1 and dataset.horizon == 1


@register
class Zero(Forecaster):
    """Tomorrow's return is zero: the reference of a raw target (in the scaled space, the
    scaler's image of 0)."""

    name = "zero"
    in_forecast = False

    def __init__(self, scalers: dict):
        self.scaler = scaler_from_dict(scalers["target"])

    @classmethod
    def applies_to(cls, dataset: Dataset) -> bool:
        return not _point_target(dataset)

    @classmethod
    def create(cls, scalers: dict) -> "Zero":
        return cls(scalers)

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        return self.scaler.transform(np.zeros((len(indices), dataset.n_assets)))


@register
class Persistence(Forecaster):
    """Tomorrow's target equals the last one in the window."""

    name = "persistence"
    reads_target_series = True

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        return dataset.target[np.asarray(indices) - 1]


@register
class WindowMean(Forecaster):
    """Tomorrow's target equals the window's average."""

    name = "window_mean"
    in_forecast = False
    reads_target_series = True

    @classmethod
    def applies_to(cls, dataset: Dataset) -> bool:
        return _point_target(dataset)

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        return dataset.windows(indices, dataset.target).mean(axis=1)


@register
class TrainMean(Forecaster):
    """Every day's target equals its average over the fitted samples, per asset."""

    name = "train_mean"
    in_forecast = False

    def fit(self, dataset: Dataset, indices: np.ndarray) -> "TrainMean":
        self.mean = dataset.target_rows(indices).mean(axis=0)
        return self

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean, (len(indices), dataset.n_assets)).copy()


def _per_asset_rows(dataset: Dataset, indices: np.ndarray) -> np.ndarray:
    """One row per (day, asset): that asset's window of every feature, flattened."""
    windows = dataset.windows(indices)  # (n, seq_len, assets, feats)
    n, steps, assets, feats = windows.shape
    return np.ascontiguousarray(windows.transpose(0, 2, 1, 3)).reshape(n * assets, steps * feats)


@register
class SharedRidge(Forecaster):
    """Ridge regression on each asset's own window, one set of weights for all assets.

    The regularisation strength is chosen by time-series cross-validation on the fitted
    samples (rows stay in date order, so every fold validates on later days).
    """

    name = "ridge"

    def __init__(self, n_splits: int = 5):
        self.model = RidgeCV(alphas=RIDGE_ALPHAS, cv=TimeSeriesSplit(n_splits=n_splits))

    def fitted_series(self, dataset: Dataset) -> np.ndarray:
        """The daily series the ridge learns to forecast: the target."""
        return dataset.target

    def fit(self, dataset: Dataset, indices: np.ndarray) -> "SharedRidge":
        """Fit on the samples' windows. The smoothed feature is the rolling mean of the raw one,
        so the columns are collinear and the smallest alphas of the grid are ill-conditioned;
        scipy warns, and cross-validation passes over those alphas anyway: the warning is muted.

        BLAS runs on one thread: with the columns this collinear, the rounding of a multi-threaded
        product moved the ridge's metrics in the ninth digit between a process with two BLAS
        threads and a dask worker (or any process started after one) with one."""
        rows = _per_asset_rows(dataset, indices)
        y = dataset.target_rows(indices, self.fitted_series(dataset)).reshape(-1)
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore", LinAlgWarning)
            self.model.fit(rows, y)
        return self

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=1, user_api="blas"):
            forecast = self.model.predict(_per_asset_rows(dataset, indices))
        return forecast.reshape(len(indices), dataset.n_assets)


def raw_feature(dataset: Dataset) -> np.ndarray | None:
    """The scaled raw returns when they share the smoothed target's scale (`scale_by='asset'`)."""
    names = [str(name) for name in dataset.feature_names]
    if "raw" not in names or dataset.scale_by != "asset":
        return None
    return dataset.features[..., names.index("raw")]


def known_part(raw: np.ndarray, indices: np.ndarray, smooth_window: int) -> np.ndarray:
    """The smoothed target's days already observed at each sample index, over the window length."""
    indices = np.asarray(indices)
    return sum(raw[indices - k] for k in range(1, smooth_window)) / smooth_window


@register
class DecomposedRidge(SharedRidge):
    """The shared ridge forecasting tomorrow's raw return, plus the known part of the target:
    the same decomposition as the network's `output='decomposed'`, for a fair comparison."""

    name = "ridge_decomposed"
    in_forecast = False

    @classmethod
    def applies_to(cls, dataset: Dataset) -> bool:
        return _smoothing(dataset) and raw_feature(dataset) is not None

    def fitted_series(self, dataset: Dataset) -> np.ndarray:
        return raw_feature(dataset)

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        tomorrow = super().predict(dataset, indices)
        window = dataset.smooth_window
        return known_part(raw_feature(dataset), indices, window) + tomorrow / window


@register
class Ceiling(Forecaster):
    """The smoothed target with its already-observed days known exactly, tomorrow at its mean.

    With horizon 1, tomorrow's w-day mean shares w-1 raw returns with the past; a model that
    cannot foresee tomorrow's raw return cannot beat this by more than noise.
    """

    name = "ceiling"
    in_forecast = False

    def __init__(self, scalers: dict):
        self.scaler = scaler_from_dict(scalers["target"])

    @classmethod
    def applies_to(cls, dataset: Dataset) -> bool:
        return _smoothing(dataset)

    @classmethod
    def create(cls, scalers: dict) -> "Ceiling":
        return cls(scalers)

    def fit(self, dataset: Dataset, indices: np.ndarray) -> "Ceiling":
        self.mean_tomorrow = dataset.raw_pct[np.asarray(indices)].mean(axis=0)
        return self

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        indices, window = np.asarray(indices), dataset.smooth_window
        known = sum(dataset.raw_pct[indices - k] for k in range(1, window))
        return self.scaler.transform((known + self.mean_tomorrow) / window)
