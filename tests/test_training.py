"""The network, its loss and its training loop, on tiny settings (seconds, not minutes)."""

import numpy as np
import pytest

from roicast.config import RunParams
from roicast.errors import DataError
from roicast.features.preprocess import build_dataset

keras = pytest.importorskip("keras")
from roicast.models import backends, hybrid, training  # noqa: E402

TINY = dict(seq_len=20, lstm_units=[8, 4], attention_heads=2, attention_key_dim=4,
            dense_units=8, epochs=2, batch_size=64)


@pytest.fixture
def dataset(small_prices):
    arrays, _, _ = build_dataset(small_prices, RunParams(**TINY))
    return arrays


@pytest.mark.parametrize("architecture", ["guide", "highway"])
def test_the_network_has_the_guides_layers_and_one_output_per_asset(architecture):
    params = RunParams(architecture=architecture)
    model = hybrid.build_model(60, 20, 2, **training.network_arguments(params))
    names = [layer.name for layer in model.layers]
    for name in ("bilstm_1", "bilstm_2", "attention", "residual", "layer_norm", "pooling", "dense", "head"):
        assert name in names
    assert model.output_shape == (None, 20)
    assert model.get_layer("bilstm_1").forward_layer.units == 64
    assert model.get_layer("attention").num_heads == 4
    assert ("highway_linear" in names) == (architecture == "highway")


def test_direction_model_ends_in_probabilities_with_batch_norm():
    params = RunParams(task="direction", **{**TINY, "epochs": 1})
    model = hybrid.build_model(20, 3, 1, **training.network_arguments(params))
    assert "batch_norm" in [layer.name for layer in model.layers]
    out = model(np.random.default_rng(0).normal(size=(5, 20, 3)).astype("float32"))
    assert np.all((out.numpy() > 0) & (out.numpy() < 1))


def test_weighted_bce_weighs_each_assets_classes():
    loss = hybrid.WeightedBinaryCrossentropy([2.0, 1.0], [1.0, 1.0])
    y_true = np.array([[1.0, 1.0]])
    y_pred = np.array([[0.5, 0.5]], dtype="float32")
    expected = np.mean([2 * -np.log(0.5), -np.log(0.5)])
    assert float(loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)


def test_balanced_class_weights_are_per_asset():
    labels = np.array([[1, 0], [1, 1], [1, 0], [0, 1]], dtype=float)
    positive, negative = training.balanced_class_weights(labels)
    np.testing.assert_allclose(positive, [4 / 6, 1.0])
    np.testing.assert_allclose(negative, [2.0, 1.0])


@pytest.mark.slow
def test_training_writes_its_outputs_and_reloads_in_safe_mode(dataset, tmp_path):
    result = training.train(dataset, RunParams(**TINY), tmp_path, verbose=0)
    training.save_training(tmp_path, result, tmp_path)
    info = result.info
    assert info["epochs_run"] == 2 and len(info["epoch_seconds"]) == 2
    assert 1 <= info["best_epoch"] <= 2 and info["n_params"] > 0
    assert info["backend"] == "tensorflow" and info["device"] == backends.device()
    reloaded = hybrid.load_model(tmp_path / "model.keras")
    idx = dataset.test_idx
    np.testing.assert_allclose(training.predict(reloaded, dataset, idx),
                               training.predict(result.model, dataset, idx), rtol=1e-5)
    assert (tmp_path / "history.csv").exists() and (tmp_path / "train.json").exists()
    assert (tmp_path / "logs").is_dir()


@pytest.mark.slow
def test_direction_training_saves_its_custom_loss(dataset, tmp_path):
    params = RunParams(task="direction", **TINY)
    result = training.train(dataset, params, tmp_path, verbose=0)
    training.save_training(tmp_path, result, tmp_path)
    assert len(result.info["class_weights"]["up"]) == dataset.features.shape[1]
    hybrid.load_model(tmp_path / "model.keras")


@pytest.mark.slow
def test_same_seed_same_weights(dataset, tmp_path):
    runs = [training.train(dataset, RunParams(**TINY), tmp_path / str(i), verbose=0) for i in range(2)]
    for a, b in zip(runs[0].model.get_weights(), runs[1].model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_training_step_is_traced_once(dataset, tmp_path, monkeypatch):
    """TensorFlow traces it a second time if the optimizer's or the metrics' variables are first
    created inside it: that was half of every training's first epoch."""
    traces = []
    original = keras.Model.train_step

    def counted(self, data):
        traces.append(data)
        return original(self, data)

    monkeypatch.setattr(keras.Model, "train_step", counted)
    training.train(dataset, RunParams(**TINY), tmp_path, verbose=0)
    assert len(traces) == 1


def test_highway_starts_at_the_ridge_solution(dataset):
    from roicast.models.baselines import SharedRidge

    params = RunParams(**TINY, output="direct")
    model = hybrid.build_model(20, 4, 2, **training.network_arguments(params))
    training.warm_start_highway(model, dataset, dataset.train_idx)
    ridge = SharedRidge().fit(dataset, dataset.train_idx)
    idx = dataset.test_idx
    np.testing.assert_allclose(training.predict(model, dataset, idx), ridge.predict(dataset, idx), atol=1e-4)


def test_non_finite_inputs_stop_before_training(dataset, tmp_path):
    dataset.features[5, 0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        training.train(dataset, RunParams(**TINY), tmp_path, verbose=0)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_self_attention_matches_keras_multi_head_attention(dropout):
    x = np.random.default_rng(0).normal(size=(5, 12, 8)).astype("float32")
    settings = dict(num_heads=3, key_dim=4, dropout=dropout)
    ours, theirs = hybrid.SelfAttention(**settings), keras.layers.MultiHeadAttention(**settings)
    ours(x, x), theirs(x, x)
    theirs.set_weights(ours.get_weights())
    out, scores = ours(x, x, return_attention_scores=True)
    expected, expected_scores = theirs(x, x, return_attention_scores=True)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=1e-5)
    np.testing.assert_allclose(np.asarray(scores), np.asarray(expected_scores), atol=1e-6)
    np.testing.assert_allclose(np.asarray(ours(x, x)), np.asarray(theirs(x, x)), atol=1e-5)


def test_attention_scores_cover_every_step(dataset):
    model = hybrid.build_model(20, 4, 2, **training.network_arguments(RunParams(**TINY)))
    scores = hybrid.attention_scores(model, training.input_windows(dataset, dataset.test_idx[:3]))
    assert tuple(scores.shape) == (3, 2, 20, 20)
    np.testing.assert_allclose(np.asarray(scores).sum(axis=-1), 1, rtol=1e-5)
