"""Naive forecasts on exactly the model's windows, and the ceiling no honest model can pass.

All of them predict the scaled target of each sample from the same inputs the network
sees, so their metrics are directly comparable with the network's.
"""

import numpy as np
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
        rows = _per_asset_rows(features, train_indices, self.seq_len)
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
