"""Fine-tuning from an earlier run (03's init_from, freeze_layers) and the refit for production
(06's refit), on a tiny finished run made with the library itself."""

import numpy as np
import pandas as pd
import pytest

from roicast.config import RunParams, validate_params
from roicast.errors import ParameterError
from roicast.features.preprocess import build_dataset
from roicast.forecasting import forecast_table
from roicast.runs import artefacts, store

keras = pytest.importorskip("keras")
from roicast.forecasting import forecast  # noqa: E402
from roicast.models import hybrid, training  # noqa: E402

pytestmark = pytest.mark.slow  # every test starts from a trained run

TINY = dict(seq_len=20, lstm_units=[4, 2], attention_heads=2, attention_key_dim=4, dense_units=8,
            epochs=2, batch_size=64)
ASSETS = ["AAPL", "JPM", "KO", "XOM"]


@pytest.fixture(scope="module")
def trained(sample_prices, tmp_path_factory):
    """One tiny training, shared by the module: (prices, dataset arrays, scaler.json, result)."""
    prices = sample_prices[ASSETS].iloc[-400:].copy()
    arrays, scalers, _ = build_dataset(prices, RunParams(**TINY))
    result = training.train(arrays, RunParams(**TINY, run_id="old"), tmp_path_factory.mktemp("old"),
                            verbose=0)
    return prices, arrays, scalers, result


@pytest.fixture
def old_run(trained, tmp_path):
    """The finished run 'old' in this test's work folder: what 01 to 03 would have written,
    each step recorded in its lineage."""
    prices, arrays, scalers, result = trained
    params = RunParams(**TINY, run_id="old")
    step = store.open_step("old", "01_collect")
    artefacts.write_parquet(step.path(store.PRICES), prices)
    artefacts.write_json(step.path(store.COLLECT_INFO), {})
    step.finish(params)
    step = store.open_step("old", "02_preprocess")
    arrays.save(step.path(store.DATASET))
    artefacts.write_json(step.path(store.SCALER), scalers)
    artefacts.write_json(step.path(store.PREPROCESS_INFO), {})
    step.finish(params)
    step = store.open_step("old", "03_train")
    training.save_training(step.dir, result, tmp_path / "work")
    step.finish(params)
    artefacts.write_json(step.dir / store.PARAMS, params.model_dump())
    return step.dir


def _started(trained, params: RunParams) -> keras.Model:
    """A new network for `params` on the module's dataset, started as 03 starts it."""
    arrays = trained[1]
    model = hybrid.build_model(20, len(ASSETS), 2, **training.network_arguments(params))
    training.initialise(model, arrays, params, arrays.train_idx, fine_tune=True)
    return model


def test_fine_tuning_starts_from_the_earlier_runs_weights_not_the_ridge(trained, old_run):
    model = _started(trained, RunParams(**TINY, run_id="new", init_from="old"))
    earlier = hybrid.load_model(old_run / "model.keras")
    for layer in model.layers:
        theirs = earlier.get_layer(layer.name).get_weights()
        for mine, saved in zip(layer.get_weights(), theirs, strict=True):
            np.testing.assert_array_equal(mine, saved)


def test_frozen_layers_keep_their_weights_while_the_others_train(trained, old_run, tmp_path):
    params = RunParams(**{**TINY, "epochs": 1}, run_id="new", init_from="old",
                       freeze_layers=["bilstm_1", "bilstm_2"])
    result = training.train(trained[1], params, tmp_path, verbose=0, fine_tune=True)
    earlier = hybrid.load_model(old_run / "model.keras")
    for name in ("bilstm_1", "bilstm_2"):
        for mine, theirs in zip(result.model.get_layer(name).get_weights(),
                                earlier.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    moved = [not np.array_equal(a, b) for a, b in zip(result.model.get_layer("dense").get_weights(),
                                                       earlier.get_layer("dense").get_weights(), strict=True)]
    assert any(moved)
    assert result.info["init_from"] == "old" and result.info["freeze_layers"] == ["bilstm_1", "bilstm_2"]


def _other_scalers(scalers: dict) -> None:
    """Run 'old''s 02 again with the same parameters, recording other scalers (its version, and
    so its 03, stay)."""
    step = store.open_step("old", "02_preprocess")
    artefacts.write_json(step.path(store.SCALER), scalers)
    step.finish(RunParams(**TINY, run_id="old"))


def test_other_assets_stop_naming_them(trained, old_run):
    scalers = artefacts.read_json(old_run / "scaler.json")
    _other_scalers({**scalers, "assets": ["AAPL", "JPM", "KO", "MSFT"]})
    with pytest.raises(ParameterError, match="only in old: MSFT; only in this run: XOM"):
        _started(trained, RunParams(**TINY, run_id="new", init_from="old"))
    _other_scalers({**scalers, "assets": ["JPM", "AAPL", "KO", "XOM"]})
    with pytest.raises(ParameterError, match="another order"):
        _started(trained, RunParams(**TINY, run_id="new", init_from="old"))


def test_another_network_stops_naming_what_differs(trained, old_run):
    with pytest.raises(ParameterError, match=r"weight shapes differ: bilstm_1"):
        _started(trained, RunParams(**{**TINY, "lstm_units": [8, 2]}, run_id="new", init_from="old"))
    with pytest.raises(ParameterError, match="layers only in old: .*highway_linear"):
        _started(trained, RunParams(**TINY, architecture="guide", run_id="new", init_from="old"))


def test_an_unknown_frozen_layer_stops_listing_the_layers(trained):
    with pytest.raises(ParameterError, match="bilstm_3 is not a layer of this network; its layers are "
                                             ".*bilstm_1, .*head"):
        _started(trained, RunParams(**TINY, freeze_layers="bilstm_1,bilstm_3"))


def test_init_from_is_a_finished_run_other_than_this_one(trained):
    with pytest.raises(ParameterError, match="init_from"):
        validate_params({"init_from": "../elsewhere"})
    with pytest.raises(ParameterError, match="this run itself"):
        validate_params({"run_id": "same", "init_from": "same"})
    with pytest.raises(ParameterError, match="does not exist"):
        _started(trained, RunParams(**TINY, run_id="new", init_from="missing"))


def test_init_from_needs_the_other_runs_training_finished_and_current(trained, old_run):
    (old_run / store.MODEL).write_bytes(b"a half-written network")
    with pytest.raises(ParameterError, match="in run 'old', 03_train did not finish or its files changed"):
        _started(trained, RunParams(**TINY, run_id="new", init_from="old"))


def test_refit_trains_best_epoch_epochs_on_the_windows_up_to_asof_as_hybrid_refit(
        trained, old_run, monkeypatch):
    prices, arrays = trained[0], trained[1]
    info = artefacts.read_json(old_run / "train.json")
    artefacts.write_json(old_run / "train.json", {**info, "best_epoch": 3, "learning_rates": [1e-3, 5e-4]})
    horizon, test_idx = arrays.horizon, arrays.test_idx
    asof = str(arrays.dates[test_idx[10] + horizon - 1])
    calls, original = [], training.refit

    def spy(*args, **kwargs):
        calls.append((args, original(*args, **kwargs)))
        return calls[-1][1]

    monkeypatch.setattr(training, "refit", spy)
    model_hash = store.file_digest(old_run / "model.keras")
    params = forecast.run_params("old").model_copy(update={"refit": True})
    with pytest.warns(UserWarning, match="stale"):
        result = forecast.make_forecast("old", params, prices=prices, asof=asof, days=2)

    (_, _, indices, epochs, *_), fit = calls[0]
    expected = np.concatenate([arrays.train_idx, arrays.val_idx, test_idx[:11]])
    np.testing.assert_array_equal(indices, expected)
    assert epochs == 3 and fit.info["epochs_run"] == 3 and fit.info["train_windows"] == len(expected)
    np.testing.assert_allclose(fit.history["learning_rate"], [1e-3, 5e-4, 5e-4], rtol=1e-6)

    frame = result.frame
    assert {"hybrid", "hybrid_refit"} <= set(frame["model"])
    assert forecast_table.headline_model(frame) == "hybrid_refit"
    width = (frame["upper_roi_pct"] - frame["lower_roi_pct"]).to_numpy()
    np.testing.assert_allclose(width[frame["model"] == "hybrid_refit"], width[frame["model"] == "hybrid"])
    assert result.info["refit"] is True
    assert any("refitted on every window up to asof for 3 epochs; it has no test score of its own" in note
               for note in result.info["notes"])

    forecast.save(old_run, result)
    assert (old_run / "forecasts" / f"{result.info['asof']}-refit.keras").exists()
    assert store.file_digest(old_run / "model.keras") == model_hash


def test_a_refit_stops_at_the_datasets_last_day(trained):
    arrays = trained[1]
    every = forecast.windows_until(arrays, pd.Timestamp("2030-01-01"))
    assert len(every) == len(arrays.train_idx) + len(arrays.val_idx) + len(arrays.test_idx)
    first_target = arrays.dates[arrays.train_idx[0] + arrays.horizon - 1]
    assert len(forecast.windows_until(arrays, pd.Timestamp(first_target) - pd.Timedelta(days=1))) == 0
