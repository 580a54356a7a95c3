"""A forecaster that lives outside roicast, plugged into a run by `model_plugins`: one class, one
`@register`. Half of persistence and half of the training mean, so its scores differ from both."""

import numpy as np

from roicast.features.dataset import Dataset
from roicast.models.forecaster import Forecaster, register


@register
class Toy(Forecaster):
    name = "toy"
    reads_target_series = True

    def fit(self, dataset: Dataset, indices: np.ndarray) -> "Toy":
        self.mean = dataset.target_rows(indices).mean(axis=0)
        return self

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        return 0.5 * dataset.target[np.asarray(indices) - 1] + 0.5 * self.mean
