"""A run's terminal holds roicast's own lines: prediction traces one graph per network and input
shape (TensorFlow warns about retracing otherwise), and TensorFlow's log goes to the kernel's."""

import logging
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import roicast
from roicast.config import RunParams
from roicast.features.preprocess import build_dataset
from roicast.runs.store import LOCKED_RUN_ENV

keras = pytest.importorskip("keras")
from roicast.evaluation import multistep  # noqa: E402
from roicast.forecasting import forecast  # noqa: E402
from roicast.models import backends, hybrid, training  # noqa: E402

TINY = RunParams(seq_len=20, lstm_units=[4, 2], attention_heads=2, attention_key_dim=4, dense_units=8)


@pytest.fixture
def data(small_prices):
    arrays, scalers, _ = build_dataset(small_prices, TINY)
    return arrays, scalers


def _network(arrays, seed: int) -> keras.Model:
    """A tiny network whose every weight counts (the highway's head starts at zero)."""
    model = hybrid.build_model(arrays.seq_len, arrays.n_assets, arrays.features.shape[2],
                               **training.network_arguments(TINY, seed))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.fixture
def traces(monkeypatch) -> list[str]:
    """The name of the model each time TensorFlow traces a predict step."""
    seen = []
    original = keras.Model.predict_step

    def counted(self, data):
        seen.append(self.name)
        return original(self, data)

    monkeypatch.setattr(keras.Model, "predict_step", counted)
    return seen


@pytest.fixture
def tensorflow_warnings(monkeypatch) -> list[str]:
    """TensorFlow's retracing warnings from a count that starts here, as in a new kernel.

    TensorFlow counts the traces of every Keras model's predict step together, process-wide, so
    the tests that ran before in this worker would otherwise decide whether this one warns."""
    from tensorflow.python.eager.polymorphic_function import polymorphic_function

    monkeypatch.setattr(polymorphic_function, "_frequent_tracing_detector_manager",
                        polymorphic_function._FrequentTracingDetectorManager())
    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("tensorflow"), Keep(logging.WARNING)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


def _windows(arrays, indices) -> np.ndarray:
    return np.asarray(arrays.windows(indices), dtype="float32").reshape(len(indices), arrays.seq_len, -1)


def test_prediction_traces_once_per_network_whatever_the_number_of_windows(data, traces):
    """Keras's `predict` traced again for a short last batch and for each number of batches
    per call: 8 traces here, where one per network is enough."""
    arrays, _ = data
    trained = training.compile_model(_network(arrays, 1), TINY)  # several batches per call
    member = _network(arrays, 2)  # uncompiled, as ensemble members come out of their stack
    every = np.concatenate([arrays.train_idx, arrays.val_idx, arrays.test_idx])
    for model in (trained, member):
        for indices in (every[:1], arrays.val_idx, arrays.test_idx, every[:256], every[:257], every):
            predicted = training.predict(model, arrays, indices)
            expected = np.asarray(model(_windows(arrays, indices), training=False))
            np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)
    assert len(traces) == 2


@pytest.mark.skipif(backends.name() != "tensorflow", reason="TensorFlow's retracing warning")
def test_a_forecast_with_an_ensemble_traces_one_graph_for_all_its_members(data, traces,
                                                                           tensorflow_warnings):
    """06 traced each of the five members on its own, and TensorFlow warned that five of the
    last ten calls had traced."""
    arrays, scalers = data
    networks = [_network(arrays, seed) for seed in range(5)]
    ensemble = forecast.Ensemble(networks)
    starts = multistep.starting_point(arrays, arrays.val_idx)
    for predictor in (networks[0], ensemble):
        multistep.roll_forward(predictor, arrays, scalers, *starts, 5)
    assert traces == [networks[0].name, "members"] and tensorflow_warnings == []
    windows = _windows(arrays, arrays.val_idx)
    members = np.mean([np.asarray(n(windows, training=False)) for n in networks], axis=0)
    np.testing.assert_allclose(ensemble.predict_on_batch(windows), members, rtol=1e-5, atol=1e-6)


def test_tensorflow_logs_to_the_kernels_stderr_in_a_kernel_the_runner_started():
    """TensorFlow in an interactive shell logs to stdout, which the runner shows in the terminal."""
    script = ("import sys, types\n"
              "sys.ps1, sys.modules['ipykernel'] = '>>> ', types.ModuleType('ipykernel')  # as in a kernel\n"
              "import roicast, tensorflow as tf\n"
              "tf.get_logger().warning('retraced')")
    env = {**os.environ, LOCKED_RUN_ENV: "r", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert done.stdout == "" and "WARNING:tensorflow:retraced" in done.stderr


def test_a_kernel_started_by_hand_keeps_its_logging_as_it_was(monkeypatch):
    """In JupyterLab, TensorFlow's warnings still show in the notebook."""
    monkeypatch.delenv(LOCKED_RUN_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setattr(logging.root, "handlers", [])
    roicast._logs_to_kernel_log()
    assert logging.root.handlers == []
