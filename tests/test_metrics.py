"""Metrics, significance tests and the backtest on data whose answer is known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from roicast.evaluation import metrics, significance, trading


@pytest.fixture
def returns():
    return np.random.default_rng(0).normal(0, 1.0, size=(300, 8))


def test_r2_is_the_mean_of_per_asset_r2(returns):
    predicted = returns + np.random.default_rng(1).normal(0, [0.5, 1, 1, 1, 1, 1, 1, 2], returns.shape)
    per_asset = [metrics.regression_metrics(returns[:, [i]], predicted[:, [i]])["r2"] for i in range(8)]
    assert metrics.regression_metrics(returns, predicted)["r2"] == pytest.approx(np.mean(per_asset))


def test_regression_metrics_reject_shape_mismatch(returns):
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.regression_metrics(returns, returns[:, :3])


def test_skill_and_headroom():
    assert metrics.skill_score(0.5, 1.0) == pytest.approx(0.5)
    assert metrics.headroom_share(1.0, 1.0, 0.5) == 0.0
    assert metrics.headroom_share(0.5, 1.0, 0.5) == 1.0
    assert np.isnan(metrics.headroom_share(0.5, 1.0, 1.0))


def test_classification_metrics_of_a_perfect_and_a_one_class_forecast():
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    perfect = metrics.classification_metrics(labels, labels * 0.8 + 0.1)
    assert perfect == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "roc_auc": 1.0}
    assert np.isnan(metrics.classification_metrics(np.ones((3, 2)), np.full((3, 2), 0.7))["roc_auc"])


def test_diebold_mariano_detects_a_better_forecast_and_is_antisymmetric(returns):
    rng = np.random.default_rng(2)
    good, bad = rng.normal(0, 0.5, returns.shape), rng.normal(0, 1.0, returns.shape)
    result = significance.diebold_mariano(good, bad, horizon=5)
    assert result["statistic"] < 0 and result["p_value"] < 0.001
    swapped = significance.diebold_mariano(bad, good, horizon=5)
    assert swapped["statistic"] == pytest.approx(-result["statistic"])
    assert swapped["p_value"] == pytest.approx(result["p_value"])


def test_diebold_mariano_does_not_reject_equal_forecasts():
    rng = np.random.default_rng(3)
    p_values = [significance.diebold_mariano(rng.normal(size=250), rng.normal(size=250))["p_value"]
                for _ in range(200)]
    assert 0.02 < np.mean(np.array(p_values) < 0.05) < 0.10


def test_binomial_direction_test():
    assert significance.binomial_direction_test(600, 1000, 0.5)["p_value"] < 1e-8
    assert significance.binomial_direction_test(500, 1000, 0.5)["p_value"] > 0.4


def test_information_coefficient_matches_scipy_per_day(returns):
    noisy = returns + np.random.default_rng(4).normal(0, 2, returns.shape)
    ic = significance.information_coefficient(noisy, returns)
    expected = [stats.spearmanr(noisy[t], returns[t]).statistic for t in range(len(returns))]
    np.testing.assert_allclose(ic["daily"], expected)
    assert significance.information_coefficient(returns, returns)["mean"] == pytest.approx(1.0)
    assert significance.information_coefficient(-returns, returns)["mean"] == pytest.approx(-1.0)


def test_backtest_of_foresight_wins_and_costs_reduce_it(returns):
    dates = pd.bdate_range("2021-01-01", periods=len(returns))
    assets = np.array([f"A{i}" for i in range(8)])
    free = trading.long_short_backtest(returns, returns, dates, assets, cost_bps=0)
    costly = trading.long_short_backtest(returns, returns, dates, assets, cost_bps=20)
    assert (free["strategy"] > 0).all()
    assert (costly["strategy"] < free["strategy"]).all()
    np.testing.assert_allclose(trading.rank_weights(returns).sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(np.abs(trading.rank_weights(returns)).sum(axis=1), 1)
    table = trading.summary_table(free)
    assert table.loc["strategy", "sharpe"] > table.loc["buy_and_hold", "sharpe"]
    assert -1 <= table.loc["buy_and_hold", "max_drawdown"] <= 0


def test_backtest_of_a_useless_signal_earns_about_nothing_before_costs(returns):
    dates = pd.bdate_range("2021-01-01", periods=len(returns))
    noise = np.random.default_rng(5).normal(size=returns.shape)
    daily = trading.long_short_backtest(noise, returns, dates, np.arange(8), cost_bps=0)
    assert abs(daily["strategy"].mean()) < 3 * daily["strategy"].std() / np.sqrt(len(daily))
