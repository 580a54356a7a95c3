"""The month-ahead target (target='sum', horizon_days): its values, and splits that keep every
training target out of the validation and test periods."""

import numpy as np
import pytest

from roicast.config import RunParams, validate_params
from roicast.errors import ParameterError
from roicast.evaluation import walkforward
from roicast.features.preprocess import build_dataset, to_roi_pct
from roicast.models import forecaster

from .conftest import random_walk_prices


def _days(dataset, indices) -> tuple[int, int]:
    """First and last daily row that the targets of `indices` sum over."""
    indices = np.asarray(indices)
    return (int(indices.min() + dataset.horizon - dataset.horizon_days),
            int(indices.max() + dataset.horizon - 1))


@pytest.mark.parametrize("horizon_days", [1, 5, 20, 60])
@pytest.mark.parametrize("horizon", [1, 3])
def test_the_sum_target_is_the_next_days_log_returns_and_no_training_target_reaches_later_periods(
        horizon_days, horizon):
    params = RunParams(target="sum", horizon_days=horizon_days, horizon=horizon, seq_len=20,
                       clip_quantile=0.05)
    dataset, scalers, info = build_dataset(random_walk_prices(700, 4), params)
    returns = dataset.returns_pct  # unclipped: a sum scores what a holder earns
    for period in ("train", "val", "test"):
        indices = dataset.indices(period)[[0, -1]]
        first = indices + horizon - 1  # the first day after the window's last, plus horizon - 1
        expected = np.stack([returns[i:i + horizon_days].sum(axis=0) for i in first])
        np.testing.assert_allclose(dataset.target_rows(indices, "target_pct"), expected, atol=1e-10)
        scaled = dataset.target_rows(indices)  # float32
        np.testing.assert_allclose(to_roi_pct(scaled, scalers), expected, atol=1e-4)
    assert _days(dataset, dataset.train_idx)[1] < _days(dataset, dataset.val_idx)[0]
    assert _days(dataset, dataset.val_idx)[1] < _days(dataset, dataset.test_idx)[0]
    assert info["gap"] >= horizon_days and info["params"]["horizon_days"] == horizon_days


def test_walk_forward_folds_of_a_sum_target_keep_the_gap():
    params = RunParams(target="sum", horizon_days=20, seq_len=20, walk_forward_folds=3)
    dataset, _, _ = build_dataset(random_walk_prices(900, 3), params)
    for split in walkforward.fold_splits(dataset, params):
        assert _days(dataset, split["train"])[1] < _days(dataset, split["val"])[0]
        assert _days(dataset, split["val"])[1] < _days(dataset, split["test"])[0]


def test_a_default_run_builds_no_sum_and_keeps_its_horizon():
    dataset, scalers, _ = build_dataset(random_walk_prices(400, 3), RunParams(seq_len=20))
    assert (dataset.horizon, dataset.horizon_days, dataset.target_of) == (1, 1, "smoothed")


def test_a_sum_target_has_the_raw_targets_baselines():
    dataset, scalers, _ = build_dataset(random_walk_prices(500, 3), RunParams(target="sum", seq_len=20))
    assert set(forecaster.for_dataset(dataset, scalers)) == {"zero", "persistence", "train_mean", "ridge"}


@pytest.mark.parametrize("values", [{"target": "sum", "task": "direction"},
                                    {"target": "sum", "output": "decomposed"},
                                    {"horizon_days": 61}, {"horizon_days": 0}])
def test_impossible_month_targets_stop_with_one_line(values):
    with pytest.raises(ParameterError):
        validate_params(values)
