"""The forecaster family: one registry that every step iterates, plugins that join it, and the
windows adapter through which 06 forecasts ahead with any member."""

import sys
from pathlib import Path

import numpy as np
import pytest

from roicast.config import RunParams, validate_params
from roicast.errors import ParameterError
from roicast.features.preprocess import build_dataset
from roicast.forecasting.on_windows import OnWindows, can_forecast
from roicast.models import baselines, forecaster

TOY = Path(__file__).parent / "plugins" / "toy_model.py"


@pytest.fixture
def registry(monkeypatch) -> dict:
    """The registry as the test found it, restored afterwards with the plugins unloaded (a plugin
    registers for the process)."""
    saved = dict(forecaster.REGISTRY)
    monkeypatch.setattr(forecaster, "REGISTRY", saved)
    yield saved
    for name in [name for name in sys.modules if name.startswith("roicast_plugin_")]:
        del sys.modules[name]


@pytest.fixture
def built(small_prices):
    dataset, scalers, _ = build_dataset(small_prices, RunParams(seq_len=20))
    return dataset, scalers


def test_a_plugin_file_adds_its_forecaster_after_the_baselines(registry, built):
    dataset, scalers = built
    own = list(forecaster.for_dataset(dataset, scalers))
    chosen = forecaster.for_dataset(dataset, scalers, [str(TOY)])
    assert "toy" not in own and list(chosen) == [*own, "toy"]
    toy = chosen["toy"].fit(dataset, dataset.train_idx).predict(dataset, dataset.test_idx)
    persistence = baselines.Persistence().predict(dataset, dataset.test_idx)
    assert toy.shape == persistence.shape and not np.allclose(toy, persistence)


def test_two_forecasters_of_one_name_stop_with_one_line(registry):
    class Other(forecaster.Forecaster):
        name = "ridge"

        def predict(self, dataset, indices):
            return np.zeros((len(indices), dataset.n_assets))

    with pytest.raises(ParameterError, match="Two forecasters are named 'ridge'"):
        forecaster.register(Other)


def test_a_plugin_that_is_no_python_file_is_refused_before_the_run(tmp_path):
    with pytest.raises(ParameterError, match="is not a Python file"):
        validate_params({"model_plugins": [str(tmp_path / "missing.py")]})
    assert validate_params({"model_plugins": str(TOY)}).model_plugins == [str(TOY)]


@pytest.mark.parametrize("name", ["ridge", "persistence"])
def test_a_forecaster_on_bare_windows_predicts_what_it_predicts_on_the_dataset(built, name):
    """06 rolls windows forward; the adapter must not change a single forecast."""
    dataset, scalers = built
    model = forecaster.for_dataset(dataset, scalers)[name]
    assert can_forecast(type(model), dataset)
    on_windows = OnWindows(model, dataset)
    idx = dataset.test_idx
    windows = dataset.windows(idx).reshape(len(idx), dataset.seq_len, -1)
    np.testing.assert_allclose(on_windows.predict_on_batch(windows), model.predict(dataset, idx),
                               rtol=1e-6, atol=1e-9)


def test_06_forecasts_with_those_that_say_so_and_can_read_the_windows(built, small_prices):
    dataset, scalers = built
    assert list(forecaster.for_dataset(dataset, scalers, in_forecast=True)) == ["persistence", "ridge"]
    raw_only, _, _ = build_dataset(small_prices,
                                   RunParams(seq_len=20, input_features=["raw"], output="direct"))
    assert not can_forecast(baselines.Persistence, raw_only) and can_forecast(baselines.SharedRidge, raw_only)


def test_the_ridge_gives_the_same_bits_on_one_blas_thread_or_two(sample_prices):
    """Its collinear columns once moved its metrics in the ninth digit with BLAS's thread count
    (a dask worker's one against a kernel's two)."""
    from threadpoolctl import threadpool_limits

    dataset, _, _ = build_dataset(sample_prices.iloc[:, :6], RunParams())
    forecasts = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            ridge = baselines.SharedRidge().fit(dataset, dataset.train_idx)
            forecasts.append(ridge.predict(dataset, dataset.test_idx))
    np.testing.assert_array_equal(*forecasts)
