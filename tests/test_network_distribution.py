"""The distribution network: its head and loss, the mixture of members, the residual correlation,
the conversion to a `distribution.Forecast` and the yearly m6 forecaster (tiny settings)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from roicast.config import RunParams
from roicast.errors import DataError, ParameterError
from roicast.evaluation import m6
from roicast.features.preprocess import build_dataset, fit_scaler, scaler_to_dict
from roicast.models import distribution
from roicast.models.network_distribution import (
    Calibration,
    mixture,
    residual_correlation,
    to_forecast,
    trailing_scale,
)

keras = pytest.importorskip("keras")
from roicast.forecasting.forecast import Ensemble  # noqa: E402
from roicast.models import hybrid, training  # noqa: E402
from roicast.models.network_distribution import YearlyNetwork, load_outputs, view_forecast  # noqa: E402

TINY = dict(seq_len=20, lstm_units=[8, 4], attention_heads=1, attention_key_dim=4, dense_units=8,
            batch_size=64, output="distribution")


def regime_prices(days: int = 1500, n_assets: int = 6, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Prices whose daily volatility switches between 0.5 % and 2.5 % every 120 days, each asset
    at its own phase; and each day's true volatility (the day of the return, row 1 on)."""
    rng = np.random.default_rng(seed)
    phase = np.arange(n_assets) * 40
    vol = np.where(((np.arange(days)[:, None] + phase) // 120) % 2 == 0, 0.005, 0.025)
    prices = 100 * np.exp(np.cumsum(rng.standard_normal((days, n_assets)) * vol, axis=0))
    index = pd.bdate_range("2000-01-03", periods=days)
    return pd.DataFrame(prices, index=index, columns=[f"A{i}" for i in range(n_assets)]), vol


def test_the_mixture_has_the_law_of_total_variance():
    mean, sd = mixture(np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([[1.0, 2.0], [1.0, 2.0]]))
    np.testing.assert_allclose(mean, [1.0, 1.0])
    np.testing.assert_allclose(sd, np.sqrt([1.0 + 1.0, 4.0]))  # E[var] + var[mean]
    draws = np.concatenate([np.random.default_rng(0).normal(m, 1.0, 200_000) for m in (0.0, 2.0)])
    assert abs(draws.std() - sd[0]) < 0.01


def test_the_calibration_widens_a_scale_half_the_held_out_spread():
    rng = np.random.default_rng(0)
    actual = rng.normal(1.0, 2.0, (4000, 3))
    calibration = Calibration.fit(actual, np.ones((4000, 3)), np.ones((4000, 3)))
    assert calibration.scale(np.ones(3)) == pytest.approx(2.0, rel=0.03)
    assert Calibration.fit(actual, np.ones((4000, 3)), np.full((4000, 3), 2.0)).scale(2.0) == \
        pytest.approx(2.0, rel=0.03)


def test_the_calibration_pulls_too_spread_scales_together_by_a_power():
    """Scales whose square root is the true spread get power 1/2; true ones keep power 1."""
    rng = np.random.default_rng(1)
    scale = np.exp(rng.uniform(np.log(0.01), np.log(1.0), (5000, 4)))
    actual = rng.standard_normal(scale.shape) * np.sqrt(scale)
    calibration = Calibration.fit(actual, np.zeros_like(scale), scale)
    assert calibration.power == pytest.approx(0.5, abs=0.05)
    np.testing.assert_allclose(calibration.scale(np.array([0.04, 0.25])), [0.2, 0.5], rtol=0.05)
    assert Calibration.fit(actual, np.zeros_like(scale), np.sqrt(scale)).power == pytest.approx(1.0, abs=0.05)


def test_an_anchored_calibration_weighs_the_anchor_by_what_held_out_returns_bear_out():
    """True spread = the anchor's: the anchor gets power 1 and the network's blind scale 0; and
    half the network's, half the anchor's (in logs): half each."""
    rng = np.random.default_rng(3)
    anchor = np.exp(rng.uniform(np.log(0.01), np.log(1.0), (6000, 4)))
    blind = np.exp(rng.uniform(np.log(0.01), np.log(1.0), anchor.shape))
    actual = rng.standard_normal(anchor.shape) * anchor
    calibration = Calibration.fit(actual, np.zeros_like(anchor), blind, anchor)
    assert calibration.anchor_power == pytest.approx(1.0, abs=0.05)
    assert calibration.power == pytest.approx(0.0, abs=0.05)
    np.testing.assert_allclose(calibration.scale(np.array([0.5, 0.5]), np.array([0.04, 0.25])), [0.04, 0.25],
                               rtol=0.1)
    both = Calibration.fit(rng.standard_normal(anchor.shape) * np.sqrt(anchor * blind), np.zeros_like(anchor),
                           blind, anchor)
    assert both.power == pytest.approx(0.5, abs=0.05) and both.anchor_power == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ParameterError, match="anchor"):
        calibration.scale(np.ones(4))
    with pytest.raises(DataError, match="anchor"):
        Calibration.fit(actual, np.zeros_like(anchor), blind, np.where(anchor > 0.5, np.nan, anchor))
    assert Calibration.fit(actual, np.zeros_like(anchor), blind).anchor_power == 0


def test_the_calibration_keeps_a_location_only_as_far_as_held_out_returns_bear_it_out():
    rng = np.random.default_rng(2)
    signal = rng.normal(0, 1.0, (5000, 4))
    actual = signal + rng.normal(0, 1.0, signal.shape)
    assert Calibration.fit(actual, signal, np.ones_like(signal)).shrink == pytest.approx(1.0, abs=0.03)
    noise = rng.normal(0, 1.0, signal.shape)
    assert Calibration.fit(actual, noise, np.ones_like(signal)).shrink < 0.05
    kept = Calibration(shrink=0.0).location(np.array([1.0, 2.0, 6.0]))
    np.testing.assert_allclose(kept, [3.0, 3.0, 3.0])  # the cross-sectional mean stays


def test_the_residual_correlation_is_shrunk_towards_none_with_a_unit_diagonal():
    rng = np.random.default_rng(1)
    target = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.0], [0.0, 0.0, 1.0]])
    residuals = rng.multivariate_normal(np.zeros(3), target, size=2000)
    scale = np.array([2.0, 0.5, 1.0])
    correlation = residual_correlation(residuals * scale + 3.0, np.full(3, 3.0), scale)
    np.testing.assert_allclose(np.diag(correlation), 1.0)
    assert 0.5 < correlation[0, 1] <= 0.6 + 0.03 and abs(correlation[0, 2]) < 0.06


def test_a_forecast_in_scaled_units_maps_back_to_log_returns():
    pct = np.random.default_rng(2).normal([1.0, -2.0], [4.0, 8.0], size=(500, 2))
    scalers = {"target": scaler_to_dict(fit_scaler("minmax", pct))}
    scaled = fit_scaler("minmax", pct).transform(np.array([[3.0, -1.0]]))[0]
    slope = fit_scaler("minmax", pct).scale_
    forecast = to_forecast(["a", "b"], scaled, slope * np.array([5.0, 10.0]), np.eye(2), scalers)
    np.testing.assert_allclose(forecast.mean, [0.03, -0.01], atol=1e-12)
    np.testing.assert_allclose(forecast.scale, [0.05, 0.10])


def test_the_loss_is_the_gaussian_negative_log_likelihood():
    y = np.array([[0.1, -0.3]], dtype="float32")
    location, scale = np.array([0.0, 0.2]), np.array([0.5, 2.0])
    output = np.concatenate([location, scale])[None].astype("float32")
    loss = float(hybrid.GaussianNLL()(y, output))
    assert loss == pytest.approx(-stats.norm.logpdf(y[0], location, scale).mean(), rel=1e-5)


def test_distribution_is_a_regression_output():
    assert RunParams(output="distribution").location_output == "decomposed"
    assert RunParams(output="distribution", target="raw").location_output == "direct"
    assert not RunParams().distributional
    with pytest.raises(ValueError, match="task='regression'"):
        RunParams(output="distribution", task="direction")


def test_the_network_gives_a_location_and_a_positive_scale_per_asset(small_prices):
    params = RunParams(**TINY, epochs=1)
    dataset, _, _ = build_dataset(small_prices, params)
    model = hybrid.build_model(dataset.seq_len, 4, 2, **training.network_arguments(params))
    training.initialise(model, dataset, params, dataset.train_idx, fine_tune=False)
    location, scale = training.predict_distribution(model, dataset, dataset.val_idx[:5])
    assert location.shape == scale.shape == (5, 4)
    np.testing.assert_allclose(training.predict(model, dataset, dataset.val_idx[:5]), location)
    # starts at the training residuals' spread: the decomposed start's error is tomorrow's return over 5
    raw = dataset.target_rows(dataset.train_idx, dataset.features[..., 1])
    np.testing.assert_allclose(scale[0], raw.std(axis=0) / 5, rtol=1e-5)
    with pytest.raises(ParameterError, match="output='distribution'"):
        training.predict_distribution(hybrid.build_model(dataset.seq_len, 4, 2, **training.network_arguments(
            RunParams(**{**TINY, "output": None}))), dataset, dataset.val_idx[:5])


def test_an_ensemble_of_distribution_networks_is_their_mixture(small_prices):
    params = RunParams(**TINY, epochs=1)
    dataset, _, _ = build_dataset(small_prices, params)
    networks = [hybrid.build_model(dataset.seq_len, 4, 2, **training.network_arguments(params, seed))
                for seed in (1, 2)]
    for network in networks:
        training.initialise(network, dataset, params, dataset.train_idx, fine_tune=False)
    windows = training.input_windows(dataset, dataset.val_idx[:3])
    outputs = np.array([network.predict_on_batch(windows) for network in networks])
    location, scale = Ensemble(networks).predict_distribution_on_batch(windows)
    expected = mixture(outputs[..., :4], outputs[..., 4:])
    np.testing.assert_allclose(location, expected[0], rtol=1e-5)
    np.testing.assert_allclose(scale, expected[1], rtol=1e-5)
    np.testing.assert_allclose(Ensemble(networks).predict_on_batch(windows), location, rtol=1e-5)


@pytest.mark.slow
def test_the_scale_learns_a_volatility_the_window_shows(tmp_path):
    prices, vol = regime_prices()
    params = RunParams(**TINY, epochs=15, target="raw")
    dataset, _, _ = build_dataset(prices, params)
    result = training.train(dataset, params, tmp_path, verbose=0)
    _, scale = training.predict_distribution(result.model, dataset, dataset.test_idx)
    true = vol[dataset.test_idx + dataset.horizon + params.smooth_window - 1]  # the target's day
    assert np.corrcoef(np.log(scale).ravel(), np.log(true).ravel())[0, 1] > 0.6
    assert scale[true == 0.025].mean() > 1.8 * scale[true == 0.005].mean()


@pytest.mark.slow
def test_a_network_sharing_the_traced_graph_is_the_fresh_one(small_prices, tmp_path):
    params = RunParams(**TINY, epochs=2)
    dataset, _, _ = build_dataset(small_prices, params)
    fresh = training.train(dataset, params, tmp_path / "fresh", verbose=0).model.get_weights()
    networks = training.CompiledNetworks()
    training.train(dataset, params, tmp_path / "other", seed=8, verbose=0, networks=networks)
    shared = training.train(dataset, params, tmp_path / "shared", verbose=0, networks=networks)
    for a, b in zip(fresh, shared.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_yearly_network_forecasts_each_month_from_the_years_before(tmp_path):
    prices, _ = regime_prices(days=1100, n_assets=5)
    params = RunParams(**TINY, epochs=2, target="sum", horizon_days=10)
    network = YearlyNetwork(params, train_years=2, members=2, track_record=1)
    evaluation = m6.evaluate(prices, network, 10, "2003-12-22", "2004-01-30", draws=500)
    assert list(evaluation.periods["asof"].dt.year) == [2003, 2004, 2004]
    assert [fit["year"] for fit in network.fits] == [2003, 2003, 2004, 2004]
    forecasts = [network.forecasts["mixture"][asof] for asof in evaluation.periods["asof"]]
    for forecast in forecasts:
        np.linalg.cholesky(forecast.covariance)
        assert np.all(forecast.scale > 0) and np.all(np.isfinite(forecast.mean))
    assert np.all(evaluation.probabilities.sum(axis=-1) == pytest.approx(1))
    first = network.forecasts["first member"][evaluation.periods["asof"].iloc[0]]
    assert not np.allclose(first.scale, forecasts[0].scale)
    assert set(network.calibration) == set(network.VIEWS)
    assert all(c.factor > 0 and 0 <= c.shrink <= 1 for c in network.calibration.values())
    with pytest.raises(ParameterError, match="horizon_days=20"):
        network(distribution.log_returns(prices), 20)

    assets, years, outputs = load_outputs(network.save_outputs(tmp_path / "outputs.npz"))
    assert sorted(years) == [2003, 2004] and list(outputs) == list(evaluation.periods["asof"])
    for year, seen in years.items():  # nothing the calibration saw lies in the year it forecasts
        assert seen.val_asof.max() < seen.val_asof.dtype.type(f"{year}-01-01")
        assert seen.val_location.shape == seen.val_scale.shape == (2, *seen.val_actual.shape)
    returns = distribution.log_returns(prices)[assets]
    anchors = trailing_scale(returns, 10)
    realised = [returns.to_numpy()[p:p + 10].sum(axis=0) for p in evaluation.periods["position"]]
    for view, chosen in YearlyNetwork.VIEWS.items():  # the recorded outputs give the same forecasts again:
        mixed = [mixture(*(part[chosen] for part in outputs[asof])) for asof in outputs]
        for k, (asof, forecast) in enumerate(network.forecasts[view].items()):
            seen = years[asof.year]
            if k == 0:  # the held-out windows' calibration at first, then the track record's
                calibration = seen.calibration(chosen, anchors)
            else:
                calibration = Calibration.fit(np.array(realised[:k]), np.array([m for m, _ in mixed[:k]]),
                                              np.array([sd for _, sd in mixed[:k]]),
                                              anchors.loc[list(outputs)[:k]].to_numpy())
            assert network.calibrations[view][asof] == calibration
            again = view_forecast(assets, *(part[chosen] for part in outputs[asof]), seen.correlation(chosen),
                                  calibration, anchors.loc[asof].to_numpy())
            np.testing.assert_allclose(again.mean, forecast.mean, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(again.covariance, forecast.covariance, rtol=1e-12)
