"""Naive forecasts on exactly the model's windows, and the ceiling no honest model can pass.

All of them predict the scaled target of each sample from the same inputs the network
sees, so their metrics are directly comparable with the network's.
"""

import warnings

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import TimeSeriesSplit

from roicast.windows import make_windows, targets_for

RIDGE_ALPHAS = np.logspace(-3, 4, 15)


def persistence(target: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Tomorrow equals the last value in the window."""
    return target[np.asarray(indices) - 1]


def window_mean(target: np.ndarray, indices: np.ndarray, seq_len: int) -> np.ndarray:
    """Tomorrow equals the window's average."""
    return make_windows(target, indices, seq_len).mean(axis=1)


def train_mean(target: np.ndarray, train_indices: np.ndarray, indices: np.ndarray,
               horizon: int = 1) -> np.ndarray:
    """Every day equals the training period's average of each asset."""
    mean = targets_for(target, train_indices, horizon).mean(axis=0)
    return np.broadcast_to(mean, (len(indices), target.shape[1])).copy()


def _per_asset_rows(features: np.ndarray, indices: np.ndarray, seq_len: int) -> np.ndarray:
    """One row per (day, asset): that asset's window of every feature, flattened."""
    windows = make_windows(features, indices, seq_len)  # (n, seq_len, assets, feats)
    n, steps, assets, feats = windows.shape
    return np.ascontiguousarray(windows.transpose(0, 2, 1, 3)).reshape(n * assets, steps * feats)


class SharedRidge:
    """Ridge regression on each asset's own window, one set of weights for all assets.

    The regularisation strength is chosen by time-series cross-validation on the
    training samples (rows stay in date order, so every fold validates on later days).
    """

    def __init__(self, seq_len: int, horizon: int = 1, n_splits: int = 5):
        self.seq_len = seq_len
        self.horizon = horizon
        self.model = RidgeCV(alphas=RIDGE_ALPHAS, cv=TimeSeriesSplit(n_splits=n_splits))

    def fit(self, features: np.ndarray, target: np.ndarray, train_indices: np.ndarray) -> "SharedRidge":
        """Fit on the training windows. The smoothed feature is the rolling mean of the raw one,
        so the columns are collinear and the smallest alphas of the grid are ill-conditioned;
        scipy warns, and cross-validation passes over those alphas anyway: the warning is muted."""
        rows = _per_asset_rows(features, train_indices, self.seq_len)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LinAlgWarning)
            self.model.fit(rows, targets_for(target, train_indices, self.horizon).reshape(-1))
        return self

    def predict(self, features: np.ndarray, indices: np.ndarray) -> np.ndarray:
        rows = _per_asset_rows(features, indices, self.seq_len)
        return self.model.predict(rows).reshape(len(indices), features.shape[1])


def ceiling_pct(raw_pct: np.ndarray, train_indices: np.ndarray, indices: np.ndarray,
                smooth_window: int) -> np.ndarray:
    """The smoothed target with its already-observed days known exactly, tomorrow at its mean.

    With horizon 1, tomorrow's w-day mean shares w-1 raw returns with the past; a model
    that cannot foresee tomorrow's raw return cannot beat this by more than noise.
    Returned in percent (the unscaled target's units).
    """
    indices = np.asarray(indices)
    mean_tomorrow = raw_pct[np.asarray(train_indices)].mean(axis=0)
    known = sum(raw_pct[indices - k] for k in range(1, smooth_window))
    return (known + mean_tomorrow) / smooth_window


def raw_feature(arrays: dict) -> np.ndarray | None:
    """The scaled raw returns when they share the smoothed target's scale (`scale_by='asset'`)."""
    names = [str(name) for name in arrays["feature_names"]]
    if "raw" not in names or str(arrays.get("scale_by", "feature")) != "asset":
        return None
    return arrays["features"][..., names.index("raw")]


def highway_target(arrays: dict, output: str) -> np.ndarray:
    """What the linear path forecasts: the smoothed target, or for `decomposed` tomorrow's raw return."""
    return raw_feature(arrays) if output == "decomposed" else arrays["target"]


def known_part(raw: np.ndarray, indices: np.ndarray, smooth_window: int) -> np.ndarray:
    """The smoothed target's days already observed at each sample index, over the window length."""
    indices = np.asarray(indices)
    return sum(raw[indices - k] for k in range(1, smooth_window)) / smooth_window


class DecomposedRidge(SharedRidge):
    """The shared ridge forecasting tomorrow's raw return, plus the known part of the target:
    the same decomposition as the network's `output='decomposed'`, for a fair comparison."""

    def __init__(self, seq_len: int, smooth_window: int, n_splits: int = 5):
        super().__init__(seq_len, 1, n_splits)
        self.smooth_window = smooth_window

    def fit(self, features: np.ndarray, raw: np.ndarray, train_indices: np.ndarray) -> "DecomposedRidge":
        super().fit(features, raw, train_indices)
        self.raw = raw
        return self

    def predict(self, features: np.ndarray, indices: np.ndarray) -> np.ndarray:
        tomorrow = super().predict(features, indices)
        return known_part(self.raw, indices, self.smooth_window) + tomorrow / self.smooth_window
