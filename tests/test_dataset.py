"""The one data shape (Dataset) and the one forecasting interface (Forecaster) of the baselines."""

import numpy as np
import pytest

from roicast.config import RunParams
from roicast.features.dataset import Dataset
from roicast.features.preprocess import build_dataset, scaler_from_dict
from roicast.models import forecaster
from roicast.models.forecaster import fit_predict
from roicast.runs import artefacts

SMALL = {"seq_len": 20}


@pytest.fixture
def built(small_prices):
    dataset, scalers, _ = build_dataset(small_prices, RunParams(**SMALL))
    return dataset, scalers


def test_a_saved_dataset_loads_with_every_field_and_its_types(built, tmp_path):
    dataset, _ = built
    again = Dataset.load(dataset.save(tmp_path / "dataset.npz"))
    for name in ("features", "target", "target_pct", "raw_pct", "returns_pct", "dates", "assets",
                 "feature_names", "train_idx", "val_idx", "test_idx"):
        np.testing.assert_array_equal(getattr(again, name), getattr(dataset, name))
    assert (again.seq_len, again.horizon, again.smooth_window) == (20, 1, 5)
    assert isinstance(again.seq_len, int) and again.scale_by == "asset" and again.target_of == "smoothed"


def test_a_dataset_written_before_the_raw_target_existed_holds_the_smoothed_one(built, tmp_path):
    dataset, _ = built
    path = dataset.save(tmp_path / "dataset.npz")
    arrays = artefacts.read_npz(path)
    del arrays["target_of"]
    artefacts.write_npz(path, **arrays)
    assert Dataset.load(path).target_of == "smoothed"


def test_target_rows_are_the_days_the_targets_fall_on(built):
    dataset, _ = built
    idx = dataset.test_idx[:3]
    np.testing.assert_array_equal(dataset.target_rows(idx), dataset.target[idx])
    three_ahead = dataset.replace(horizon=3)
    np.testing.assert_array_equal(three_ahead.target_rows(idx, "dates"), dataset.dates[idx + 2])
    np.testing.assert_array_equal(three_ahead.target_rows(idx, dataset.raw_pct), dataset.raw_pct[idx + 2])
    assert dataset.horizon == 1, "replace returns a copy"


def test_the_baselines_are_forecasters_with_their_textbook_formulas(built):
    dataset, scalers = built
    idx, train = dataset.test_idx, dataset.train_idx
    forecasts = fit_predict(forecaster.for_dataset(dataset, scalers), dataset, train, idx)
    assert list(forecasts) == ["persistence", "window_mean", "train_mean", "ridge", "ridge_decomposed",
                               "ceiling"]
    assert all(values.shape == (len(idx), dataset.n_assets) for values in forecasts.values())
    np.testing.assert_array_equal(forecasts["persistence"], dataset.target[idx - 1])
    np.testing.assert_allclose(forecasts["window_mean"][0], dataset.target[idx[0] - 20:idx[0]].mean(axis=0))
    np.testing.assert_allclose(forecasts["train_mean"][5], dataset.target[train].mean(axis=0))
    raw = dataset.raw_pct
    ceiling_pct = (raw[idx - 1] + raw[idx - 2] + raw[idx - 3] + raw[idx - 4] + raw[train].mean(axis=0)) / 5
    target_scaler = scaler_from_dict(scalers["target"])
    np.testing.assert_allclose(forecasts["ceiling"], target_scaler.transform(ceiling_pct))


def test_a_raw_target_has_zero_and_no_ceiling(small_prices):
    dataset, scalers, _ = build_dataset(small_prices, RunParams(**SMALL, target="raw"))
    chosen = forecaster.for_dataset(dataset, scalers)
    assert list(chosen) == ["zero", "persistence", "train_mean", "ridge"]
    zero = chosen["zero"].fit(dataset, dataset.train_idx).predict(dataset, dataset.test_idx[:2])
    np.testing.assert_allclose(scaler_from_dict(scalers["target"]).inverse_transform(zero), 0, atol=1e-12)
