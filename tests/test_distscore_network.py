"""A distribution network (output='distribution', target='sum') among 04's distributional
predictors and as 06's M6 forecaster: an initialised, unfitted tiny network."""

import numpy as np
import pytest

from roicast.config import RunParams
from roicast.evaluation import distscore, ensemble_scores
from roicast.features.preprocess import build_dataset, series_until, to_roi_pct
from roicast.forecasting import distforecast
from roicast.runs import store

keras = pytest.importorskip("keras")
from roicast.models import hybrid, training  # noqa: E402
from roicast.models import network_distribution as nd  # noqa: E402

H = 10


@pytest.fixture(scope="module")
def network_run(sample_prices):
    prices = sample_prices[["AAPL", "JPM", "KO", "XOM"]].iloc[-400:]
    params = RunParams(seq_len=20, lstm_units=[8, 4], attention_heads=1, attention_key_dim=4, dense_units=8,
                       output="distribution", target="sum", horizon_days=H)
    dataset, scalers, _ = build_dataset(prices, params)
    model = hybrid.build_model(dataset.seq_len, 4, 2, **training.network_arguments(params))
    training.initialise(model, dataset, params, dataset.train_idx, fine_tune=False)
    return prices, params, dataset, scalers, model


def _validation_calibration(model, dataset, scalers) -> nd.Calibration:
    """What the forecaster fits on the validation windows, fitted here again."""
    return nd.calibration_on(dataset.target_rows(dataset.val_idx),
                             *nd.dataset_distribution([model], dataset, dataset.val_idx), scalers)


def test_the_network_is_scored_beside_the_baselines_on_the_same_periods(network_run):
    _, params, dataset, scalers, model = network_run
    network = distscore.network_predictors(model, dataset, scalers, params.distributional)
    scored = distscore.section(dataset, H, network, draws=500)
    assert set(scored.record()["rps"]) == {"uniform", "covariance", "ridge_scale", "hybrid"}
    assert scored.headline() == "hybrid"
    network_scores = scored.evaluations["hybrid"]
    starts = network_scores.periods["position"].to_numpy()
    location = to_roi_pct(training.predict(model, dataset, starts), scalers) / 100
    calibration = _validation_calibration(model, dataset, scalers)
    np.testing.assert_allclose(network_scores.mean, calibration.location(location), rtol=1e-5, atol=1e-9)
    assert (network_scores.scale > 0).all()
    np.testing.assert_allclose(network_scores.realised, scored.evaluations["covariance"].realised)
    point = dataset.replace(target_of="smoothed")
    assert distscore.network_predictors(model, point, scalers, True) == {}
    assert distscore.network_predictors(model, dataset, scalers, False) == {}


def test_the_network_makes_the_m6_file_and_says_so(network_run):
    prices, params, dataset, scalers, model = network_run
    latest = series_until(prices, params, scalers)
    network = distforecast.network_of({"hybrid": model}, dataset, latest, scalers, params.distributional)
    result = distforecast.make(dataset, latest, H, 1, network, draws=500)
    assert result.info["predictor"] == "hybrid" and "hybrid's distribution" in result.info["note"]
    np.testing.assert_allclose(result.m6.filter(like="Rank").sum(axis=1), 1.0)
    month = result.table[result.table["horizon_days"] == H]
    expected = to_roi_pct(training.predict(model, latest, np.array([len(latest.features)])), scalers)[0]
    calibration = _validation_calibration(model, dataset, scalers)
    np.testing.assert_allclose(month["mean_pct"], calibration.location(expected), rtol=1e-5)


def test_05_scores_the_members_mixture_beside_the_first_network(network_run, tmp_path, capsys):
    _, params, dataset, scalers, model = network_run
    other = hybrid.build_model(dataset.seq_len, 4, 2, **training.network_arguments(params))
    training.initialise(other, dataset, params, dataset.train_idx, fine_tune=False)
    other.set_weights([w * 1.5 for w in model.get_weights()])  # a member that disagrees
    (tmp_path / store.ENSEMBLE).mkdir()
    other.save(tmp_path / store.ENSEMBLE / "member_8.keras")
    scored = ensemble_scores.distribution_scores(dataset, scalers, params, model, tmp_path)
    assert {"covariance", "hybrid", "ensemble"} <= set(scored.evaluations)
    mixed, alone = scored.evaluations["ensemble"], scored.evaluations["hybrid"]
    assert not np.allclose(mixed.scale, alone.scale) and np.isfinite(mixed.scale).all()
    part = ensemble_scores.distribution_record(scored)["distribution"]
    assert part["rps"] == {"ensemble": scored.record()["rps"]["ensemble"]} and 0 < part["crps"]["ensemble"]
    point = params.model_copy(update={"output": "point"})
    assert ensemble_scores.distribution_scores(dataset, scalers, point, model, tmp_path) is None
    assert "forecast points" in capsys.readouterr().out
    assert ensemble_scores.distribution_record(None) == {}
