"""A fitted forecaster called like a Keras model on bare windows: what 06's recursive forecast rolls.

06 forecasts the days after the data by feeding each predictor windows that end in forecasts
(`multistep.roll_forward`); a `Forecaster` predicts samples of a `Dataset`. `OnWindows` turns
the windows into the samples of a dataset of their own, each window followed by one empty row,
so that every registered forecaster forecasts ahead with no code of its own for 06.
"""

import numpy as np

from roicast.features.dataset import Dataset
from roicast.models.forecaster import Forecaster


def target_feature(dataset: Dataset) -> int | None:
    """The position of the target's own series among the input features, or None."""
    names = [str(name) for name in dataset.feature_names]
    return names.index(dataset.target_of) if dataset.target_of in names else None


def can_forecast(forecaster: type[Forecaster], dataset: Dataset) -> bool:
    """Whether the windows hold what the forecaster reads: its target's own past, if it reads it."""
    return not forecaster.reads_target_series or target_feature(dataset) is not None


class OnWindows:
    """`forecaster`, fitted on the training samples of `dataset`, predicting from windows
    (n, seq_len, assets × features) as `predict_on_batch` does."""

    def __init__(self, forecaster: Forecaster, dataset: Dataset):
        self.forecaster = forecaster.fit(dataset, dataset.train_idx)
        self.dataset, self.target_feature = dataset, target_feature(dataset)

    def predict_on_batch(self, windows: np.ndarray) -> np.ndarray:
        n, steps, width = windows.shape
        n_features = self.dataset.features.shape[2]
        features = windows.reshape(n, steps, width // n_features, n_features)
        gap = np.full_like(features[:, :1], np.nan)  # the day each window forecasts
        rows = np.concatenate([features, gap], axis=1).reshape(n * (steps + 1), *features.shape[2:])
        unknown = np.full(rows.shape[:2], np.nan)
        target = rows[..., self.target_feature] if self.target_feature is not None else unknown
        view = self.dataset.replace(features=rows, target=target, target_pct=unknown, raw_pct=unknown,
                                    returns_pct=unknown, dates=np.arange(len(rows)))
        return self.forecaster.predict(view, np.arange(n) * (steps + 1) + steps)
