"""Multi-step forecasts: the recursive roll-forward and the direct per-horizon targets."""

import numpy as np
import pytest

from roicast.config import RunParams
from roicast.evaluation import multistep
from roicast.features.preprocess import build_dataset, scaler_from_dict, to_roi_pct


class ImpliedMeanModel:
    """Predicts the mean of the window's last `w` raw returns: today's smoothed value.

    Fed back recursively, it repeats itself forever only if the raw return appended at
    each step is the one the smoothed forecast implies.
    """

    def __init__(self, arrays, scalers):
        self.w = arrays.smooth_window
        self.n_assets = len(arrays.assets)
        self.raw = scaler_from_dict(scalers["features"]["raw"])
        self.scalers = scalers

    def predict_on_batch(self, x):
        windows = x.reshape(len(x), x.shape[1], self.n_assets, 2)
        raw_pct = np.stack([self.raw.inverse_transform(windows[:, t, :, 1])
                            for t in range(x.shape[1] - self.w, x.shape[1])], axis=1)
        target = scaler_from_dict(self.scalers["target"])
        return target.transform(raw_pct.mean(axis=1)).astype(np.float32)


@pytest.fixture
def dataset(small_prices):
    arrays, scalers, _ = build_dataset(small_prices, RunParams(seq_len=20))
    return arrays, scalers


def test_recursive_feedback_appends_the_raw_return_the_forecast_implies(dataset):
    arrays, scalers = dataset
    indices = multistep.origins(arrays.test_idx, 4)
    forecasts = multistep.recursive_forecast(ImpliedMeanModel(arrays, scalers), arrays, scalers,
                                             indices, steps=4)
    assert forecasts.shape == (4, len(indices), len(arrays.assets))
    last_smoothed = arrays.target[indices - 1]
    for step in range(4):
        np.testing.assert_allclose(forecasts[step], last_smoothed, atol=1e-4)


def test_direct_targets_stay_inside_their_period(dataset):
    arrays, _ = dataset
    shifted = multistep.for_horizon(arrays, 4)
    assert shifted.horizon == 4
    assert shifted.train_idx[-1] + 3 == arrays.train_idx[-1]
    assert shifted.val_idx[-1] + 3 == arrays.val_idx[-1]
    assert arrays.horizon == 1, "the original arrays are untouched"


def test_error_by_horizon_of_persistence_grows_with_the_horizon(dataset):
    arrays, scalers = dataset
    indices = multistep.origins(arrays.test_idx, 5)
    forecasts = multistep.baseline_forecasts(arrays, indices, 5)
    errors = multistep.error_by_horizon(arrays, scalers, forecasts, indices)
    rmse = errors.query("predictor == 'persistence' and space == 'scaled'")["rmse"].to_numpy()
    assert len(rmse) == 5 and np.all(np.diff(rmse) > 0)
    first = errors.query("predictor == 'persistence' and space == 'roi_pct' and horizon == 1")
    actual = arrays.target_rows(indices, "target_pct")
    predicted = to_roi_pct(arrays.target[indices - 1], scalers)
    assert first["mae"].item() == pytest.approx(np.abs(actual - predicted).mean())
