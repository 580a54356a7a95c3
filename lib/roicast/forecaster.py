"""One interface for everything that forecasts: the network, its ensemble and every baseline.

A `Forecaster` is fitted on some samples of a `Dataset` and predicts the scaled target of
others, (len(indices), n_assets). Evaluation, walk-forward folds, multi-step comparisons and
forward forecasts loop over one mapping of named forecasters, so a new model is one class.
"""

from typing import Protocol

import numpy as np

from roicast.dataset import Dataset


class Forecaster(Protocol):
    def fit(self, dataset: Dataset, indices: np.ndarray) -> "Forecaster":
        """Learn from the samples `indices` (and nothing after them) of `dataset`."""

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        """The scaled target of each sample in `indices`: shape (len(indices), n_assets)."""


def fit_predict(forecasters: dict[str, Forecaster], dataset: Dataset, fit_on: np.ndarray,
                indices: np.ndarray) -> dict[str, np.ndarray]:
    """Each forecaster fitted on `fit_on` and its forecasts for `indices`, by name."""
    return {name: forecaster.fit(dataset, fit_on).predict(dataset, indices)
            for name, forecaster in forecasters.items()}
