"""04's distribution section and 06's month ahead (distscore, distforecast) on a
dataset of 02, without a network."""

import numpy as np
import pandas as pd
import pytest

from roicast.config import RunParams
from roicast.evaluation import distscore
from roicast.features.preprocess import build_dataset, series_until
from roicast.forecasting import distforecast
from roicast.runs.artefacts import jsonable

from .conftest import random_walk_prices

H = 20


@pytest.fixture(scope="module")
def built():
    """Ten assets (two to a quintile), about four years, their volatilities 0.5 % to 2 % a day."""
    prices = random_walk_prices(1000, 10, seed=3)
    prices = 100 * np.exp(np.log(prices / 100) * np.linspace(0.5, 2.0, 10))
    params = RunParams(seq_len=20)
    dataset, scalers, _ = build_dataset(prices, params)
    return prices, params, dataset, scalers


@pytest.fixture(scope="module")
def scored(built):
    return distscore.section(built[2], H, draws=2000)


def test_periods_lie_in_the_test_split_without_overlap_and_the_window_comes_from_validation(built, scored):
    dataset = built[2]
    table = scored.evaluations["covariance"].periods
    first, last = distscore.period_days(dataset, dataset.test_idx)
    assert table["position"].iloc[0] == first
    assert (np.diff(table["position"]) == H).all()
    assert table["position"].iloc[-1] + H - 1 <= last
    val = distscore.periods_of(dataset, "val", H)
    assert val["position"].iloc[-1] + H - 1 < first
    assert scored.window in distscore.WINDOWS and scored.window in scored.window_rps
    assert set(scored.window_rps) <= {w for w in distscore.WINDOWS if w <= val["position"].iloc[0]}


def test_uniform_scores_016_and_volatility_gives_the_covariance_skill(scored):
    record = jsonable(scored.record())
    assert record["rps"]["uniform"] == pytest.approx(0.16)
    assert record["crps"]["uniform"] is None  # no distribution of returns, no CRPS
    assert set(record["rps"]) == set(record["crps"]) == {"uniform", "covariance", "ridge_scale"}
    assert record["rps"]["covariance"] < 0.16  # the volatile assets land in the extreme quintiles
    assert record["predictors"]["ridge_scale"]["rps_vs_reference"]["t"] is not None
    table = scored.table()
    assert {"rps", "crps", "cover90", "cover90_high", "ir", "t_rps_vs_covariance"} <= set(table.columns)


def test_no_forecast_uses_the_returns_of_its_own_period(built, scored):
    dataset = built[2]
    start = distscore.periods_of(dataset, "test", H)["position"].iloc[0]
    changed = dataset.returns_pct.copy()
    changed[start:] = changed[start:] * -3 + 1
    features = dataset.features.copy()
    features[start:] = 0.5
    other = distscore.section(dataset.replace(returns_pct=changed, features=features), H, draws=500)
    for name in ("covariance", "ridge_scale"):
        ours, theirs = scored.evaluations[name], other.evaluations[name]
        np.testing.assert_allclose(theirs.mean[0], ours.mean[0])
        np.testing.assert_allclose(theirs.scale[0], ours.scale[0])
        assert not np.allclose(theirs.realised[0], ours.realised[0])


def test_a_test_split_shorter_than_the_horizon_says_so_in_one_line(capsys):
    dataset, _, _ = build_dataset(random_walk_prices(300, 3), RunParams(seq_len=20))
    result = distscore.for_run(dataset, 60)
    assert isinstance(result, distscore.Unavailable)
    assert result.record() == {"skipped": result.reason} and "horizon_days=60" in result.reason
    result.table()
    assert capsys.readouterr().out.count("\n") == 1


def test_the_month_ahead_gives_quantiles_ranks_weights_and_the_m6_file(built):
    prices, params, dataset, scalers = built
    latest = series_until(prices, params, scalers)
    result = distforecast.make(dataset, latest, H, steps=3, draws=2000)
    assert result.info["predictor"] == "covariance" and "no distribution" in result.info["note"]
    assert sorted(result.table["horizon_days"].unique()) == [1, 2, 3, H]
    quantiles = result.table.filter(like="_pct").drop(columns="mean_pct").to_numpy()
    assert (np.diff(quantiles, axis=1) > 0).all()
    m6 = result.m6
    assert list(m6.columns) == ["ID", "Rank1", "Rank2", "Rank3", "Rank4", "Rank5", "Decision"]
    assert list(m6["ID"]) == [str(a) for a in dataset.assets]
    np.testing.assert_allclose(m6.filter(like="Rank").sum(axis=1), 1.0)
    assert 0.25 <= m6["Decision"].abs().sum() <= 1 + 1e-12
    extremes = m6[["Rank1", "Rank5"]].sum(axis=1)
    assert extremes.iloc[-1] > extremes.iloc[0]  # the most volatile asset, the least
    assert m6["Decision"].iloc[0] > m6["Decision"].iloc[-1]  # inverse volatility
    assert isinstance(result.table, pd.DataFrame)
