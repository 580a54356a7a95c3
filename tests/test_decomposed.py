"""Forecast only what is unknown: one scale per asset keeps the 5-day-mean identity, and the
decomposed output adds the known part of the target exactly."""

import numpy as np
import pytest

from roicast.config import RunParams, validate_params
from roicast.errors import ParameterError
from roicast.evaluation import evaluate
from roicast.features.preprocess import build_dataset
from roicast.models import baselines

DECOMPOSED = dict(seq_len=20, scale_by="asset", output="decomposed")


@pytest.mark.parametrize("scaler", ["minmax", "standard"])
def test_one_scale_per_asset_keeps_the_smoothed_series_the_mean_of_the_raw_one(small_prices, scaler):
    arrays, _, _ = build_dataset(small_prices, RunParams(scaler=scaler, **DECOMPOSED))
    smoothed, raw = arrays.features[..., 0], arrays.features[..., 1]
    means = np.stack([raw[k - 4:k + 1].mean(axis=0) for k in range(4, len(raw))])
    np.testing.assert_allclose(smoothed[4:], means, atol=1e-5)
    per_feature, _, _ = build_dataset(small_prices, RunParams(scaler=scaler, seq_len=20, scale_by="feature"))
    f_smoothed, f_raw = per_feature.features[..., 0], per_feature.features[..., 1]
    f_means = np.stack([f_raw[k - 4:k + 1].mean(axis=0) for k in range(4, len(f_raw))])
    assert np.abs(f_smoothed[4:] - f_means).max() > 1e-2  # the guide's scaling breaks it


def test_the_known_part_layer_is_the_mean_of_the_windows_last_raw_returns(small_prices):
    from roicast.models.hybrid import KnownPart

    arrays, _, _ = build_dataset(small_prices, RunParams(**DECOMPOSED))
    n, assets = 7, arrays.features.shape[1]
    idx = arrays.test_idx[:n]
    windows = np.stack([arrays.features[i - 20:i] for i in idx]).reshape(n, 20, assets * 2)
    layer = KnownPart(5, assets, 2, 1)
    expected = baselines.known_part(arrays.features[..., 1], idx, 5)
    np.testing.assert_allclose(np.asarray(layer(windows)), expected, atol=1e-6)


def test_the_decomposed_model_is_the_known_part_plus_a_fifth_of_its_raw_forecast(small_prices, tmp_path):
    from roicast.models import training
    from roicast.models.hybrid import build_model, load_model

    params = RunParams(**DECOMPOSED, lstm_units=[4, 2], attention_heads=1, attention_key_dim=2,
                       dense_units=4)
    arrays, _, _ = build_dataset(small_prices, params)
    model = build_model(20, arrays.features.shape[1], 2, **training.network_arguments(params, 1))
    names = [layer.name for layer in model.layers]
    assert "known_plus_forecast" in names
    idx = arrays.test_idx[:3]
    windows = np.stack([arrays.features[i - 20:i] for i in idx]).reshape(3, 20, -1)
    import keras

    raw_forecast = keras.Model(model.input, model.get_layer("body_plus_highway").output)(windows)
    expected = baselines.known_part(arrays.features[..., 1], idx, 5) + np.asarray(raw_forecast) / 5
    np.testing.assert_allclose(np.asarray(model(windows)), expected, atol=1e-5)
    model.save(tmp_path / "decomposed.keras")
    loaded = load_model(tmp_path / "decomposed.keras")
    np.testing.assert_allclose(np.asarray(loaded(windows)), expected, atol=1e-5)


def test_the_decomposed_ridge_comes_close_to_the_ceiling(sample_prices):
    arrays, scalers, _ = build_dataset(sample_prices[["AAPL", "JPM", "KO", "XOM", "PG", "MSFT"]],
                                       RunParams(**DECOMPOSED))
    idx = arrays.test_idx
    metrics = evaluate.score(arrays, scalers, evaluate.baseline_forecasts(arrays, scalers, idx), idx)
    r2 = {name: values["r2"] for name, values in metrics["scaled"].items()}
    assert r2["ridge_decomposed"] == pytest.approx(r2["ceiling"], abs=0.02)
    assert r2["ridge_decomposed"] > r2["persistence"]


def test_decomposed_needs_one_scale_per_asset_and_the_raw_feature():
    with pytest.raises(ParameterError, match="scale_by='asset'"):
        validate_params({"output": "decomposed", "scale_by": "feature"})
    with pytest.raises(ParameterError, match="'raw' among input_features"):
        validate_params({**DECOMPOSED, "input_features": ["smoothed"]})


def test_the_unknown_part_is_scored_against_the_training_mean(sample_prices):
    arrays, scalers, _ = build_dataset(sample_prices[["AAPL", "JPM", "KO", "XOM", "PG", "MSFT"]],
                                       RunParams(**DECOMPOSED))
    idx = arrays.test_idx
    forecasts = evaluate.baseline_forecasts(arrays, scalers, idx)
    tests = evaluate.unknown_part(arrays, scalers, forecasts, idx)
    assert "ceiling" not in tests and {"ridge", "ridge_decomposed", "persistence"} <= set(tests)
    ridge = tests["ridge_decomposed"]
    assert -0.2 < ridge["r2_vs_train_mean"] < 0.05 and 0.3 < ridge["direction_acc"] < 0.7
    assert set(evaluate.unknown_part_table(tests).columns) >= {"ic_mean", "ic_t", "dm_statistic"}
    verdict = evaluate.unknown_part_verdict(tests, "ridge_decomposed")
    assert "training mean" in verdict and ("No evidence of skill" in verdict or "better than" in verdict)


def test_the_default_decomposes_where_the_data_allow_it():
    assert validate_params({}).resolved_output == "decomposed"
    assert validate_params({"task": "direction"}).resolved_output == "direct"
    assert validate_params({"scale_by": "feature"}).resolved_output == "direct"
    assert validate_params({"horizon": 3}).resolved_output == "direct"
