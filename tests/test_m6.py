"""M6 scores, distributional baselines and the submission file (models.distribution, evaluation.m6)."""

from functools import partial

import numpy as np
import pandas as pd
import pytest

from roicast.errors import DataError, ParameterError
from roicast.evaluation import m6
from roicast.models import distribution
from roicast.models.distribution import Forecast


def _gaussian(scale: np.ndarray) -> Forecast:
    return Forecast([f"A{i}" for i in range(len(scale))], np.zeros(len(scale)), np.diag(np.square(scale)))


@pytest.mark.parametrize("n_assets", [5, 20, 100])
def test_rps_of_uniform_probabilities_is_016_whatever_the_outcome(n_assets):
    rng = np.random.default_rng(0)
    outcomes = distribution.rank_bins(rng.normal(size=(50, n_assets)))
    uniform = np.full((50, n_assets, 5), 0.2)
    np.testing.assert_allclose(m6.rps(uniform, outcomes), 0.16, atol=1e-12)


def test_rps_of_a_perfect_forecast_is_zero():
    outcomes = distribution.rank_bins(np.random.default_rng(1).normal(size=20))
    assert m6.rps(np.eye(5)[outcomes], outcomes) == pytest.approx(0.0, abs=1e-15)


def test_rps_agrees_with_a_hand_computation():
    probabilities = np.array([[0.1, 0.2, 0.3, 0.2, 0.2], [0.5, 0.5, 0.0, 0.0, 0.0]])
    outcomes = np.array([2, 4])
    by_hand = []
    for p, y in zip(probabilities, outcomes, strict=True):
        cumulative_p = np.cumsum(p)
        cumulative_y = (np.arange(5) >= y).astype(float)
        by_hand.append(sum((cumulative_p[k] - cumulative_y[k]) ** 2 for k in range(5)) / 5)
    # asset 1: (0.1² + 0.3² + 0.4² + 0.2²)/5 = 0.06; asset 2: (0.5² + 1 + 1 + 1)/5 = 0.65
    assert by_hand == pytest.approx([0.06, 0.65])
    assert m6.rps(probabilities, outcomes) == pytest.approx(np.mean(by_hand))


def test_identical_assets_get_uniform_quintile_probabilities_summing_to_one():
    probabilities = distribution.quintile_probabilities(_gaussian(np.full(20, 0.05)),
                                                        np.random.default_rng(0), draws=10_000)
    assert probabilities.shape == (20, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(probabilities, 0.2, atol=0.02)  # five Monte Carlo standard errors


def test_a_volatile_asset_gets_more_mass_in_the_extreme_quintiles():
    scale = np.full(20, 0.05)
    scale[0] = 0.15
    probabilities = distribution.quintile_probabilities(_gaussian(scale), np.random.default_rng(0), 4000)
    extremes = probabilities[:, [0, 4]].sum(axis=1)
    assert extremes[0] > 0.6 > extremes[1:].max()


def test_a_forecast_without_a_view_is_exactly_uniform_and_equal_weight():
    forecast = distribution.uniform(pd.DataFrame(np.zeros((3, 10))), 20)
    assert (distribution.quintile_probabilities(forecast, np.random.default_rng(0)) == 0.2).all()
    np.testing.assert_allclose(m6.decision_weights(forecast), 0.1)


@pytest.mark.parametrize("n_assets", [4, 6, 8, 13])
def test_without_a_view_each_bin_gets_its_share_of_the_assets_and_beats_a_fifth_each(n_assets):
    forecast = distribution.uniform(pd.DataFrame(np.zeros((3, n_assets))), 20)
    shares = distribution.quintile_probabilities(forecast, np.random.default_rng(0))
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    outcomes = distribution.rank_bins(np.random.default_rng(1).normal(size=(400, n_assets)))
    np.testing.assert_allclose(shares[0], np.bincount(outcomes[0], minlength=5) / n_assets)
    every_period = np.broadcast_to(shares, (len(outcomes), *shares.shape))
    assert m6.rps(every_period, outcomes).mean() < m6.rps(np.full_like(every_period, 0.2), outcomes).mean()


def test_periods_do_not_overlap_and_follow_their_history():
    dates = pd.bdate_range("2020-01-01", periods=130)
    table = distribution.periods(dates, horizon_days=20, start="2020-01-15")
    assert len(table) == 6 and (table["position"].diff().dropna() == 20).all()
    assert (table["asof"] < table["first"]).all()
    assert (table["last"] < table["first"].shift(-1)).iloc[:-1].all()
    with pytest.raises(ParameterError):
        distribution.periods(dates, horizon_days=0)


@pytest.mark.parametrize("forecaster", [partial(distribution.trailing_covariance, window=250),
                                        partial(distribution.trailing_covariance, window=250, shrink=True),
                                        partial(distribution.garch, window=300, correlation_window=250)],
                         ids=["covariance", "ledoit-wolf", "garch"])
def test_a_period_is_forecast_without_its_own_prices(small_prices, forecaster):
    """Changing every price from a period's first day on changes its outcome, never its forecast."""
    start = small_prices.index[320]
    before = m6.evaluate(small_prices, forecaster, start=start, draws=2000)
    perturbed = small_prices.copy()
    inside = perturbed.index >= before.periods["first"].iloc[1]
    noise = np.exp(np.random.default_rng(0).normal(0, 0.05, size=(inside.sum(), perturbed.shape[1])))
    perturbed.loc[inside] *= noise
    after = m6.evaluate(perturbed, forecaster, start=start, draws=2000)
    np.testing.assert_array_equal(after.scale[:2], before.scale[:2])
    np.testing.assert_array_equal(after.probabilities[:2], before.probabilities[:2])
    assert not np.array_equal(after.scale[2], before.scale[2])  # the change reaches later forecasts
    assert not np.allclose(after.realised[1], before.realised[1])


def test_coverage_of_a_calibrated_gaussian_is_nominal_in_every_tercile():
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.02, 0.2, size=60_000)
    table = m6.coverage(rng.normal(0, scale), np.zeros_like(scale), scale)
    assert list(table.index) == ["all", "low", "mid", "high"]
    np.testing.assert_allclose(table.to_numpy(), np.tile(m6.LEVELS, (4, 1)), atol=0.01)
    assert m6.coverage(np.zeros(3), np.zeros(3), np.full(3, np.nan)).isna().all().all()


def test_decisions_information_ratio_and_drawdown():
    weights = m6.decision_weights(_gaussian(np.array([0.1, 0.2, 0.4])))
    np.testing.assert_allclose(weights, [4 / 7, 2 / 7, 1 / 7])
    with pytest.raises(ParameterError):
        m6.decision_weights(_gaussian(np.ones(3)), gross=1.5)
    period = np.log([1.1, 0.5, 1.2])
    assert m6.max_drawdown(period) == pytest.approx(-0.5)
    assert m6.information_ratio(period) == pytest.approx(period.mean() / period.std(ddof=1))
    np.testing.assert_allclose(m6.portfolio_log_returns(np.array([0.5, 0.5]), np.log([[1.2, 0.9]])),
                               [np.log(1.05)])


def test_paired_t_is_positive_when_losses_are_higher():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.1, 0.2, 100)
    assert m6.paired_t(reference + 0.01 + rng.normal(0, 0.005, 100), reference)["t"] > 3
    assert np.isnan(m6.paired_t(np.full(100, np.nan), reference)["t"])


def test_missing_prices_are_refused_with_advice(small_prices):
    holes = small_prices.copy()
    holes.iloc[5, 1] = np.nan
    with pytest.raises(DataError, match="complete table"):
        distribution.log_returns(holes)


def test_submission_is_an_m6_file(small_prices, tmp_path):
    frame = m6.submission(small_prices, draws=2000)
    assert list(frame.columns) == ["ID", "Rank1", "Rank2", "Rank3", "Rank4", "Rank5", "Decision"]
    assert list(frame["ID"]) == list(small_prices.columns)
    np.testing.assert_allclose(frame.filter(like="Rank").sum(axis=1), 1.0)
    assert 0.25 <= frame["Decision"].abs().sum() <= 1 + 1e-12
    path = m6.write_submission(frame, tmp_path / "forecasts" / "2022-12-28_m6.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), frame)
