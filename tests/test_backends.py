"""Keras's other backends: the same windows as tf.data, training on JAX, models across backends,
a backend that is not installed, a run without TensorBoard logs.

The tests run under TensorFlow (the default backend); what runs on JAX runs in a subprocess
with KERAS_BACKEND=jax and TensorFlow made unimportable, as on a GPU machine without it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from roicast.config import RunParams
from roicast.errors import ParameterError
from roicast.features.preprocess import build_dataset

keras = pytest.importorskip("keras")
from roicast import config, paths  # noqa: E402
from roicast.cli import main  # noqa: E402
from roicast.features import batches  # noqa: E402
from roicast.models import backends, hybrid, training  # noqa: E402
from roicast.runs import runner, store, sweep  # noqa: E402

from .conftest import four_assets  # noqa: E402

TINY = dict(seq_len=20, lstm_units=[8, 4], attention_heads=2, attention_key_dim=4,
            dense_units=8, epochs=2, batch_size=64)
NO_TENSORFLOW = "import sys; sys.modules['tensorflow'] = None\n"  # import tensorflow now fails


@pytest.fixture
def dataset(small_prices):
    arrays, _, _ = build_dataset(small_prices, RunParams(**TINY))
    return arrays


def _as_numpy(batch) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(part) for part in batch]


def test_window_batches_hold_the_windows_of_the_tf_data_pipeline(dataset):
    features, idx = dataset.features, dataset.train_idx
    targets = training.training_targets(dataset, idx, RunParams(**TINY))
    ours = batches.WindowBatches(features, targets, idx, 20, 64)
    theirs = list(training.window_dataset(features, targets, idx, 20, 64).as_numpy_iterator())
    assert len(ours) == len(theirs)
    for k, (windows, y) in enumerate(theirs):
        np.testing.assert_array_equal(_as_numpy(ours[k])[0], windows)
        np.testing.assert_array_equal(_as_numpy(ours[k])[1], y)
    inputs_only = batches.WindowBatches(features, None, idx, 20, 64)[1]
    assert len(inputs_only) == 1
    np.testing.assert_array_equal(_as_numpy(inputs_only)[0], theirs[1][0])
    np.testing.assert_array_equal(theirs[0][0][3], training.input_windows(dataset, idx[3:4])[0])


def _epoch_orders(seed: int, epochs: int = 3) -> list[np.ndarray]:
    features = np.arange(100 * 2 * 1, dtype=np.float32).reshape(100, 2, 1)
    data = batches.WindowBatches(features, np.arange(90.0)[:, None], np.arange(10, 100), 10, 32,
                                 shuffle=True, seed=seed)
    orders = []
    for _ in range(epochs):
        orders.append(np.concatenate([_as_numpy(data[k])[1][:, 0] for k in range(len(data))]))
        data.on_epoch_end()
    return orders


def test_shuffled_batches_are_reproducible_and_cover_every_window_once_per_epoch():
    first, again, other = _epoch_orders(3), _epoch_orders(3), _epoch_orders(4)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for order in first:
        assert sorted(order) == list(range(90))
    assert not np.array_equal(first[0], first[1]), "a new order every epoch"
    assert not np.array_equal(first[0], other[0]), "another seed, another order"


def test_the_default_backend_is_tensorflow_and_needs_no_gpu():
    assert backends.name() == "tensorflow" and RunParams().backend == "tensorflow"
    assert backends.device() == "cpu" or backends.gpu_available()


def _run(code: str, backend: str, tmp_path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


ON_JAX = NO_TENSORFLOW + """
import json
from pathlib import Path
import keras
import numpy as np, pandas as pd
from roicast.models import hybrid, training
from roicast.config import RunParams
from roicast.features.preprocess import build_dataset

saved = hybrid.load_model("saved/model.keras")
gap = np.abs(saved.predict(np.load("saved/windows.npy"), verbose=0) - np.load("saved/expected.npy")).max()
loaded = {{"backend": keras.config.backend(), "gap": float(gap), "loss": type(saved.loss).__name__}}

params = RunParams(**{tiny})
arrays, _, _ = build_dataset(pd.read_csv("prices.csv", index_col=0, parse_dates=True), params)
result = training.train(arrays, params, Path("run"), verbose=0)
training.save_training(Path("run"), result, Path("run"))
idx = arrays.test_idx
reloaded = hybrid.load_model("run/model.keras")
gap = np.abs(training.predict(reloaded, arrays, idx) - training.predict(result.model, arrays, idx)).max()
trained = {{**result.info, "reload_gap": float(gap), "files": sorted(p.name for p in Path("run").iterdir())}}
print(json.dumps({{"loaded": loaded, "trained": trained}}))
"""


@pytest.fixture(scope="module")
def on_jax(sample_prices, tmp_path_factory) -> dict:
    """One process with JAX only, TensorFlow unimportable as on a GPU machine without it: it
    loads a model saved here under TensorFlow (the tests' own backend), then trains a network.
    One import of JAX and Keras for both tests."""
    pytest.importorskip("jax")
    assert keras.config.backend() == "tensorflow"
    folder = tmp_path_factory.mktemp("on-jax")
    (folder / "saved").mkdir()
    params = RunParams(**TINY, architecture="guide", task="direction")
    model = training.compile_model(hybrid.build_model(20, 4, 2, **training.network_arguments(params)), params,
                                   (np.full(4, 1.5), np.full(4, 0.75)))
    windows = np.random.default_rng(0).normal(size=(16, 20, 8)).astype("float32")
    np.save(folder / "saved" / "windows.npy", windows)
    np.save(folder / "saved" / "expected.npy", model.predict(windows, verbose=0))
    model.save(folder / "saved" / "model.keras")
    four_assets(sample_prices).to_csv(folder / "prices.csv")
    return _run(ON_JAX.format(tiny=TINY), "jax", folder)


@pytest.mark.slow
def test_training_on_jax_needs_no_tensorflow(on_jax):
    info = on_jax["trained"]
    assert info["backend"] == "jax" and info["device"] == "cpu"
    assert info["epochs_run"] == 2 and np.isfinite(info["best_val_loss"])
    assert info["reload_gap"] < 1e-5
    assert {"model.keras", "history.csv", "train.json"} <= set(info["files"])


@pytest.mark.slow
def test_a_model_saved_under_tensorflow_loads_under_jax(on_jax):
    loaded = on_jax["loaded"]
    assert loaded["backend"] == "jax" and loaded["loss"] == "WeightedBinaryCrossentropy"
    assert loaded["gap"] < 1e-5


def test_a_backend_that_is_not_installed_stops_before_the_run_naming_its_extra(monkeypatch, capsys):
    installed = config.find_spec
    monkeypatch.setattr(config, "find_spec", lambda name: None if name == "torch" else installed(name))
    monkeypatch.setattr(runner, "_execute", lambda nb, *args: pytest.fail(f"{nb} was started"))
    assert main(["run", "--run-id", "on-torch", "-p", "backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "backend 'torch' needs torch, which is not installed" in err
    assert '.venv/bin/pip install -e ".[torch]"' in err
    assert not paths.runs_dir().exists()
    with pytest.raises(ParameterError, match=r'pip install -e "\.\[torch\]"'):
        sweep.expand_grid({"backend": ["tensorflow", "torch"]})


def test_a_run_on_jax_without_tensorboard_logs_is_complete(monkeypatch):
    pytest.importorskip("jax")
    seen = []

    def execute(nb, params, *args, **kwargs):  # each step as the store sees it; 03 writes no logs/
        seen.append(os.environ["KERAS_BACKEND"])
        step = store.open_step(params.run_id, nb)
        for name in store.SPECS[nb].writes:
            if name in ("ensemble", "forecasts"):
                (step.dir / name).mkdir(exist_ok=True)
            elif name != "logs":
                (step.dir / name).write_text(json.dumps({"made_by": nb}))
        step.finish(params)

    monkeypatch.setattr(runner, "_execute", execute)
    monkeypatch.setattr(runner, "start_preloading", lambda report_dir: None)  # no kernel to fork
    params = runner.resolve_params({"backend": "jax"}, "on-jax", None)
    result = runner.run_chain(params, log=lambda line: None)
    assert result.status == "succeeded" and seen == ["jax"] * len(paths.NOTEBOOKS)
    assert not (paths.run_dir("on-jax") / "logs").exists()
    assert store.complete_steps(paths.run_dir("on-jax")) == list(paths.NOTEBOOKS)
    assert store.run_status("on-jax") == "succeeded"
    with pytest.raises(ParameterError, match="is complete; nothing to resume"):
        runner.resume_notebooks("on-jax")
