import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from roicast import plots
from roicast.config import RunParams
from roicast.errors import DataError, RoicastWarning
from roicast.features.preprocess import (
    build_dataset,
    guide_log1p_nan_share,
    log_returns_pct,
    scaler_from_dict,
    to_roi_pct,
    transform_stages,
)

from .conftest import random_walk_prices

SMALL = dict(seq_len=20)


def test_log_returns_have_no_nan_for_losses_where_the_guides_log1p_does(sample_prices):
    returns = log_returns_pct(sample_prices)
    assert not returns.isna().any().any()
    assert (returns < -1).any().any()
    assert guide_log1p_nan_share(sample_prices) > 0.1


def test_log_returns_are_in_percent():
    prices = pd.DataFrame({"A": [100.0, 110.0, 99.0]}, index=pd.bdate_range("2021-01-01", periods=3))
    np.testing.assert_allclose(log_returns_pct(prices)["A"], 100 * np.log([1.1, 0.9]))


@pytest.mark.parametrize("scaler", ["minmax", "standard"])
@pytest.mark.parametrize("clip", [None, 0.01])
def test_changing_prices_after_the_training_cutoff_changes_nothing_in_training(small_prices, scaler, clip):
    params = RunParams(scaler=scaler, clip_quantile=clip, **SMALL)
    arrays, scalers, _ = build_dataset(small_prices, params)
    last_train_target = arrays.dates[arrays.train_idx[-1]]

    changed = small_prices.copy()
    after = changed.index > pd.Timestamp(last_train_target)
    noise = np.random.default_rng(0).uniform(0.5, 2, changed.loc[after].shape)
    changed.loc[after] = changed.loc[after] * noise
    arrays2, scalers2, _ = build_dataset(changed, params)

    train = arrays.train_idx
    rows = slice(0, train[-1] + 1)
    np.testing.assert_array_equal(arrays.features[rows], arrays2.features[rows])
    np.testing.assert_array_equal(arrays.target[train], arrays2.target[train])
    assert json.dumps(scalers) == json.dumps(scalers2)
    assert not np.array_equal(arrays.target[arrays.test_idx], arrays2.target[arrays.test_idx])


def test_minmax_scaler_is_fitted_on_training_rows_only(small_prices):
    arrays, _, _ = build_dataset(small_prices, RunParams(**SMALL, scale_by="feature"))
    train_rows = slice(0, arrays.train_idx[-1] + 1)
    assert arrays.target[train_rows].min() == pytest.approx(0, abs=1e-6)
    assert arrays.target[train_rows].max() == pytest.approx(1, abs=1e-6)


@pytest.mark.parametrize("scaler", ["minmax", "standard"])
def test_inverse_scaling_returns_the_smoothed_returns(small_prices, scaler):
    arrays, scalers, _ = build_dataset(small_prices, RunParams(scaler=scaler, **SMALL))
    np.testing.assert_allclose(to_roi_pct(arrays.target, scalers), arrays.target_pct, atol=1e-4)
    assert scaler_from_dict(scalers["target"]).n_features_in_ == small_prices.shape[1]


def test_a_constant_asset_does_not_divide_by_zero():
    prices = random_walk_prices(300, 3)
    prices["FLAT"] = 50.0
    arrays, scalers, _ = build_dataset(prices, RunParams(**SMALL))
    assert np.isfinite(arrays.features).all()
    assert np.isfinite(to_roi_pct(arrays.target, scalers)).all()


def test_an_all_nan_asset_is_dropped_with_a_warning():
    prices = random_walk_prices(300, 3)
    prices["EMPTY"] = np.nan
    with pytest.warns(RoicastWarning, match="EMPTY"):
        arrays, _, _ = build_dataset(prices, RunParams(**SMALL))
    assert "EMPTY" not in arrays.assets


def test_too_few_rows_says_how_many_are_needed_and_how_many_there_are():
    prices = random_walk_prices(50, 3)
    with pytest.raises(DataError, match=r"49 rows \(trading days\) of returns.*at least \d+"):
        build_dataset(prices, RunParams(seq_len=60))


def test_smoothing_window_one_keeps_raw_returns(small_prices):
    arrays, _, _ = build_dataset(small_prices, RunParams(smooth_window=1, **SMALL))
    np.testing.assert_allclose(arrays.target_pct, arrays.raw_pct)


def test_periods_do_not_share_smoothed_days(small_prices):
    params = RunParams(**SMALL)
    arrays, _, info = build_dataset(small_prices, params)
    assert arrays.val_idx[0] - arrays.train_idx[-1] > params.smooth_window
    assert arrays.test_idx[0] - arrays.val_idx[-1] > params.smooth_window
    periods = info["periods"]
    assert periods["train"]["end"] < periods["val"]["start"] < periods["test"]["start"]


def test_a_single_asset_goes_through_preprocessing_and_every_plot_of_02():
    """`-p min_assets 1` on one asset's export: nothing in 02 needs a second asset."""
    prices = random_walk_prices(300, 1)
    assert 0 <= guide_log1p_nan_share(prices) <= 1
    arrays, _, info = build_dataset(prices, RunParams(min_assets=1, **SMALL))
    assert info["assets"] == ["A0"] and info["window_shape"][1] == 1
    figures = [plots.plot_return_distributions(transform_stages(prices, arrays)),
               plots.plot_correlation_heatmap(log_returns_pct(prices)),
               plots.plot_periods(arrays)]
    assert all(figure.axes for figure in figures)
    plt.close("all")
