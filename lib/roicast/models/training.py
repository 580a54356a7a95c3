"""Train a network on the windows of 02_preprocess: seeds, input pipeline, callbacks, outputs.

The input pipeline gathers each batch's windows from the daily series inside tf.data
(no 60 copies of the data in memory), several batches run per call into the graph, and the
guide's callbacks (ReduceLROnPlateau, EarlyStopping, ModelCheckpoint's best model) run
beside TensorBoard, CSVLogger and TerminateOnNaN. The best model is kept in memory
(EarlyStopping's `restore_best_weights`) and written once, as model.keras, when training
ends: the guide's ModelCheckpoint wrote a .keras file on every improving epoch, which cost
more than the epoch itself on a GPU (benchmarks/README.md) and was never read back. On a GPU
the LSTMs take the cuDNN path; with several GPUs the model is mirrored over them
(tf.distribute.MirroredStrategy).

That is the TensorFlow backend, the default, whose numbers the benchmarks and tests pin.
On PyTorch or JAX (KERAS_BACKEND) the same windows come from a PyDataset
(`roicast.features.batches`), the TensorBoard log is written only where TensorFlow is installed (its
writer is TensorFlow's), and
TensorFlow need not be installed: roicast imports it only on its own backend (Keras
itself still imports it wherever it is installed).
"""

import importlib.util
import json
import os
import random
import shutil
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from roicast import paths
from roicast.config import RunParams
from roicast.errors import DataError, ParameterError
from roicast.features.batches import WindowBatches
from roicast.features.dataset import Dataset
from roicast.features.preprocess import direction_labels
from roicast.models import backends, baselines
from roicast.models.baselines import Persistence, SharedRidge
from roicast.models.forecaster import Forecaster
from roicast.models.hybrid import GaussianNLL, WeightedBinaryCrossentropy, build_model, load_model
from roicast.runs import store
from roicast.runs.artefacts import atomic_path, read_json, write_json

if TYPE_CHECKING:
    import tensorflow as tf

EVAL_BATCH = 256  # validation and prediction batches: the mean loss is the same, the passes fewer
STEPS_PER_EXECUTION = 16  # batches per call into the graph: less Python between steps (not on torch)
EPOCH_LOG = "history.partial.csv"  # CSVLogger's log while training; history.csv when done


def distribution_strategy() -> "tf.distribute.Strategy":
    """Mirror the model over every GPU when there are several; otherwise the one default device."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def model_scope() -> AbstractContextManager:
    """Where the model is built: TensorFlow's distribution strategy; on the other backends, one device."""
    return distribution_strategy().scope() if backends.name() == "tensorflow" else nullcontext()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and Keras, and make TensorFlow's ops deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    backends.make_deterministic()


def check_finite(dataset: Dataset, samples: np.ndarray) -> None:
    """Stop before training if any input or the target of any sample it learns from holds NaN or
    infinity (a 'sum' target's first rows, which no sample reaches, are NaN by design; a direct
    multi-step network's dataset has no target for its last samples, which it never learns from)."""
    for name, values in (("features", dataset.features), ("target", dataset.target_rows(samples))):
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(f"{int(bad.sum())} non-finite values in {name} of dataset.npz. "
                            "Re-run 02_preprocess; if it persists, check the prices for holes.")


def balanced_class_weights(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-asset weights for up (1) and down (0) days, sklearn's 'balanced' rule."""
    positive, negative = np.ones(labels.shape[1]), np.ones(labels.shape[1])
    for asset in range(labels.shape[1]):
        column = labels[:, asset]
        classes = np.unique(column)
        if len(classes) == 2:
            negative[asset], positive[asset] = compute_class_weight("balanced", classes=classes, y=column)
    return positive, negative


def training_targets(dataset: Dataset, indices: np.ndarray, params: RunParams) -> np.ndarray:
    if params.task_spec.classifies:
        return direction_labels(dataset, indices, params.direction_of)
    return dataset.target_rows(indices).astype(np.float32)


def window_dataset(features: np.ndarray, targets: np.ndarray | None, indices: np.ndarray,
                   seq_len: int, batch_size: int, shuffle: bool = False, seed: int = 0) -> "tf.data.Dataset":
    """Batches of (windows, targets), each window gathered from the daily series on the fly."""
    import tensorflow as tf

    series = tf.constant(features.reshape(len(features), -1), dtype=tf.float32)
    offsets = tf.range(-seq_len, 0, dtype=tf.int64)
    indices = np.asarray(indices, dtype=np.int64)
    parts = (indices,) if targets is None else (indices, targets.astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if targets is None:
        ds = ds.map(lambda i: tf.gather(series, i[:, None] + offsets))
    else:
        ds = ds.map(lambda i, y: (tf.gather(series, i[:, None] + offsets), y))
    return ds.prefetch(tf.data.AUTOTUNE)


def window_batches(features: np.ndarray, targets: np.ndarray | None, indices: np.ndarray,
                   seq_len: int, batch_size: int, shuffle: bool = False, seed: int = 0):
    """The batches for the backend in use: tf.data on TensorFlow, a PyDataset on the others."""
    if backends.name() == "tensorflow":
        return window_dataset(features, targets, indices, seq_len, batch_size, shuffle, seed)
    return WindowBatches(features, targets, indices, seq_len, batch_size, shuffle, seed)


def input_windows(dataset: Dataset, indices: np.ndarray) -> np.ndarray:
    """The network's inputs for some sample indices as one array, (n, seq_len, assets × features)."""
    windows = dataset.windows(indices)
    return windows.reshape(len(windows), windows.shape[1], -1)


def network_arguments(params: RunParams, seed: int | None = None) -> dict:
    """`models.build_model`'s hyper-parameters, taken from a run's parameters."""
    return {
        "architecture": params.architecture, "task": params.task, "lstm_units": tuple(params.lstm_units),
        "dropout_lstm": params.dropout_lstm, "attention_heads": params.attention_heads,
        "attention_key_dim": params.attention_key_dim, "dense_units": params.dense_units,
        "dropout_dense": params.dropout_dense, "output": params.location_output,
        "distribution": params.distributional, "smooth_window": params.smooth_window,
        "raw_index": params.input_features.index("raw") if "raw" in params.input_features else None,
        "seed": params.seed if seed is None else seed,
    }


def loss_and_metrics(params: RunParams, class_weights=None) -> tuple:
    """What a network of `params` trains on, and what else it reports: weighted BCE for direction
    (`class_weights` from its training labels), the Gaussian NLL for a distribution, MSE otherwise.
    One place, so that a member trained in a stack trains on its lone network's loss."""
    if params.task_spec.classifies:
        return WeightedBinaryCrossentropy(*class_weights), [keras.metrics.BinaryAccuracy(name="accuracy"),
                                                            keras.metrics.AUC(name="auc")]
    if params.distributional:
        return GaussianNLL(), []
    return "mse", ["mae"]


def compile_model(model: keras.Model, params: RunParams, class_weights=None) -> keras.Model:
    """AdamW with the guide's settings; MSE + MAE for regression, weighted BCE for direction."""
    optimizer = keras.optimizers.AdamW(learning_rate=params.resolved_learning_rate,
                                       weight_decay=params.weight_decay, beta_1=0.9, beta_2=0.999,
                                       epsilon=1e-7, clipnorm=params.resolved_clipnorm)
    loss, metrics = loss_and_metrics(params, class_weights)
    steps = 1 if backends.name() == "torch" else STEPS_PER_EXECUTION  # Keras on torch takes only 1
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, steps_per_execution=steps)
    create_training_state(model)
    return model


class CompiledNetworks:
    """Compiled networks kept for the next training of the same shape in this process.

    Tracing a network's training step costs several epochs (benchmarks/README.md); networks
    trained one after another (ensemble members) can share one traced graph. `start` puts a
    kept network exactly where a freshly built one starts: every variable copied from it (the
    dropout layers' seed states too) and the optimizer's state back to zero, so the training
    that follows is the one the fresh network would have had.
    """

    def __init__(self):
        self.kept: dict[str, keras.Model] = {}

    def start(self, fresh: keras.Model, params: RunParams, class_weights=None) -> keras.Model:
        shape = {k: v for k, v in network_arguments(params).items() if k != "seed"}  # seeds: in the weights
        key = json.dumps([fresh.input_shape, shape, params.resolved_learning_rate, params.weight_decay,
                          params.resolved_clipnorm, params.task, None if class_weights is None
                          else [list(map(float, w)) for w in class_weights]], sort_keys=True, default=str)
        if key not in self.kept:
            self.kept[key] = compile_model(fresh, params, class_weights)
            return self.kept[key]
        model = self.kept[key]
        for kept, new in zip(model.variables, fresh.variables, strict=True):
            kept.assign(new)
        for variable in model.optimizer.variables:
            variable.assign(np.zeros(variable.shape, variable.dtype))
        model.optimizer.learning_rate = params.resolved_learning_rate
        return model


def create_training_state(model: keras.Model) -> None:
    """Create the optimizer's and the metrics' variables now, outside any graph.

    Left to `fit`, TensorFlow creates them inside its first trace of the training step, and a
    `tf.function` that created variables is traced a second time: building that graph took half
    of the first epoch (benchmarks/README.md, "End to end"). The metrics' one update here is
    reset before any epoch counts.
    """
    model.optimizer.build(model.trainable_variables)
    zeros = np.zeros((1, *model.output_shape[1:]), dtype="float32")
    model.compute_metrics(None, zeros, zeros)
    model.reset_metrics()


def warm_start_highway(model: keras.Model, dataset: Dataset, train_indices: np.ndarray,
                       output: str = "direct") -> None:
    """Start the linear highway at the shared ridge solution fitted on the training windows.

    Gradient descent on 60+ strongly collinear inputs converges slowly; the closed-form
    ridge start lets training spend its epochs on what the recurrent body adds. With
    `output='decomposed'` the network forecasts only tomorrow's raw return, where a ridge on
    the window does worse than each asset's training mean: it starts there instead (the
    highway at zero, the head's bias at the means), which is the ceiling's forecast.
    """
    if output == "decomposed":
        means = dataset.target_rows(train_indices, baselines.raw_feature(dataset)).mean(axis=0)
        highway = model.get_layer("highway_linear")
        highway.set_weights([np.zeros_like(w) for w in highway.get_weights()])
        kernel, _ = model.get_layer("head").get_weights()
        model.get_layer("head").set_weights([kernel, means.astype(np.float32)])
        return
    ridge = SharedRidge().fit(dataset, train_indices)
    coef, intercept = ridge.model.coef_, ridge.model.intercept_
    model.get_layer("highway_linear").set_weights(
        [coef.reshape(-1, 1).astype(np.float32), np.array([intercept], dtype=np.float32)])


def start_scale(model: keras.Model, dataset: Dataset, params: RunParams, train_indices: np.ndarray) -> None:
    """Set the `Scale` layer's base to each asset's spread of the training targets around the
    location the network starts at (`warm_start_highway`'s): the training mean's forecast of
    tomorrow's return over the smoothing window when decomposed, the ridge's when direct, the
    training mean's for the guide. The network then starts at an honest Gaussian and learns how
    the window moves it; started at 1, the scale would take thousands of steps to come down.
    The recent variances (`models.RecentVariance`) are centred on their training means, so that
    their path starts at zero too.
    """
    targets = dataset.target_rows(train_indices)
    if params.architecture == "highway" and params.location_output == "decomposed":
        raw = dataset.target_rows(train_indices, baselines.raw_feature(dataset))
        spread = raw.std(axis=0) / params.smooth_window
    elif params.architecture == "highway":
        ridge = SharedRidge().fit(dataset, train_indices)
        spread = (targets - ridge.predict(dataset, train_indices)).std(axis=0)
    else:
        spread = targets.std(axis=0)
    model.get_layer("scale").set_weights([np.maximum(spread, 1e-6).astype(np.float32)])
    recent = model.get_layer("recent_variance")
    series = dataset.windows(train_indices)[..., recent.feature_index]  # (windows, steps, assets)
    centre = [np.log(series[:, -span:].var(axis=1) + 1e-12).mean(axis=0) for span in recent.spans]
    recent.set_weights([np.stack(centre, axis=-1).astype(np.float32)])


def check_same_assets(assets: list[str], init_from: str) -> None:
    """Stop unless the earlier run had these assets in this order: the network's input holds one
    slot per asset, and its output one column per asset, in scaler.json's order."""
    theirs = read_json(paths.run_dir(init_from) / store.SCALER)["assets"]
    if theirs == assets:
        return
    only_theirs = [a for a in theirs if a not in assets]
    only_mine = [a for a in assets if a not in theirs]
    if only_theirs or only_mine:
        differs = (f"only in {init_from}: {', '.join(only_theirs) or 'none'}; only in this run: "
                   f"{', '.join(only_mine) or 'none'}")
    else:
        differs = f"the same assets in another order ({', '.join(theirs)} against {', '.join(assets)})"
    raise ParameterError(f"init_from={init_from}: its assets differ from this run's ({differs}). "
                         "Fine-tuning needs the same assets in the same order; use the same tickers.")


def weight_shapes(model: keras.Model) -> dict[str, list[tuple[int, ...]]]:
    """Each layer's name and the shapes of its weights: what two networks must share for one to
    start from the other's weights."""
    return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers}


def check_same_network(model: keras.Model, source: keras.Model, init_from: str) -> None:
    """Stop unless `source` has the layers of `model`, by name, with weights of the same shapes."""
    mine, theirs = weight_shapes(model), weight_shapes(source)
    problems = []
    if only := [name for name in theirs if name not in mine]:
        problems.append(f"layers only in {init_from}: {', '.join(only)}")
    if only := [name for name in mine if name not in theirs]:
        problems.append(f"layers only in this run's network: {', '.join(only)}")
    if shapes := [f"{name} {theirs[name]} against {mine[name]}" for name in mine
                  if name in theirs and mine[name] != theirs[name]]:
        problems.append(f"weight shapes differ: {'; '.join(shapes)}")
    if problems:
        raise ParameterError(f"init_from={init_from}: its network does not match this run's "
                             f"({'; '.join(problems)}). Fine-tuning needs the same architecture, task, "
                             "output, layer sizes and input features as the earlier run.")


def load_initial_weights(model: keras.Model, init_from: str, assets: list[str]) -> None:
    """Copy an earlier run's weights into `model`, layer by layer, after checking that both runs
    read the same assets with the same network."""
    run_dir = store.check_finished(init_from, "03_train", f"init_from={init_from}")
    check_same_assets(assets, init_from)
    source = load_model(run_dir / store.MODEL)
    check_same_network(model, source, init_from)
    for layer in model.layers:
        layer.set_weights(source.get_layer(layer.name).get_weights())


def freeze(model: keras.Model, names: list[str]) -> None:
    """Keep the named layers at their starting weights (before compiling, which reads the flag)."""
    known = [layer.name for layer in model.layers]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ParameterError(f"freeze_layers: {', '.join(unknown)} is not a layer of this network; its "
                             f"layers are {', '.join(known)}.")
    for name in names:
        model.get_layer(name).trainable = False


def initialise(model: keras.Model, dataset: Dataset, params: RunParams, train_indices: np.ndarray,
               fine_tune: bool) -> None:
    """The starting weights: an earlier run's when fine-tuning from one (which the ridge start
    must not overwrite), else for the highway the ridge solution; then the frozen layers."""
    if fine_tune and params.init_from is not None:
        load_initial_weights(model, params.init_from, [str(a) for a in dataset.assets])
    elif params.architecture == "highway" and params.task_spec.forecasts_target:
        warm_start_highway(model, dataset, train_indices, params.location_output)
    if params.distributional and not (fine_tune and params.init_from is not None):
        start_scale(model, dataset, params, train_indices)
    if fine_tune:
        freeze(model, params.freeze_layers)


def validation_persistence_loss(dataset: Dataset) -> float:
    """MSE of persistence on the validation windows: the bar the model's val_loss must clear."""
    val_idx = dataset.val_idx
    error = Persistence().predict(dataset, val_idx) - dataset.target_rows(val_idx)
    return float(np.mean(error**2))


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of every epoch."""

    def on_train_begin(self, logs=None):
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def validation_callbacks(params: RunParams, verbose: int = 1) -> list:
    """The guide's callbacks, all steered by the validation loss; the best epoch's weights are
    restored at the end (the guide's ModelCheckpoint, kept in memory instead of on disk)."""
    return [
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=params.lr_factor,
                                          patience=params.lr_patience, min_lr=params.min_lr,
                                          verbose=verbose),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.early_stopping_patience,
                                      restore_best_weights=True, verbose=verbose),
    ]


def make_callbacks(params: RunParams, work_dir: Path, timer: EpochTimer, verbose: int = 1,
                   schedule: list[float] | None = None) -> list:
    """The guide's three callbacks, or for a fit without validation the per-epoch learning rates
    of `schedule`, plus TensorBoard (where TensorFlow is installed), CSVLogger, TerminateOnNaN and a timer."""
    if schedule is None:
        steering = validation_callbacks(params, verbose)
    else:
        steering = [keras.callbacks.LearningRateScheduler(lambda epoch, _: schedule[epoch])]
    callbacks = [
        *steering,
        keras.callbacks.TensorBoard(log_dir=str(work_dir / store.LOGS), write_graph=False),
        keras.callbacks.CSVLogger(str(work_dir / EPOCH_LOG)),
        keras.callbacks.TerminateOnNaN(),
        timer,
    ]
    if tensorflow_installed():
        return callbacks
    return [c for c in callbacks if not isinstance(c, keras.callbacks.TensorBoard)]


def tensorflow_installed() -> bool:
    """Whether TensorBoard's writer, TensorFlow's `tf.summary`, can be imported, under any backend."""
    if backends.name() == "tensorflow":
        return True
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except ValueError:  # sys.modules["tensorflow"] is None: TensorFlow hidden on purpose
        return False


@dataclass
class TrainResult:
    model: keras.Model
    history: pd.DataFrame
    info: dict


def train(dataset: Dataset, params: RunParams, work_dir: Path, seed: int | None = None,
          train_indices: np.ndarray | None = None, verbose: int = 2, fine_tune: bool = False,
          schedule: list[float] | None = None, networks: CompiledNetworks | None = None) -> TrainResult:
    """Build, compile and fit the network of `params` on the training windows.

    Validation is the period after training (never the test period); the returned model
    holds the weights of the best validation epoch.

    `fine_tune` (03 and its refit) starts from `params.init_from`'s weights and freezes
    `params.freeze_layers`; the other retrainings (walk-forward folds, ensemble members, one
    network per horizon) start afresh, since the earlier run may have trained on their test days.
    `schedule`, the learning rate of each epoch, fits without validation for exactly that many
    epochs: for a refit, which holds nothing out. `networks` lets trainings in a row share one
    traced graph; the result's model is then valid until the next of them starts.
    """
    seed = params.seed if seed is None else seed
    set_seed(seed)
    train_idx = dataset.train_idx if train_indices is None else train_indices
    validate = schedule is None
    check_finite(dataset, np.concatenate([train_idx, dataset.val_idx]) if validate else train_idx)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    seq_len = dataset.seq_len
    n_days, n_assets, n_features = dataset.features.shape
    y_train = training_targets(dataset, train_idx, params)
    class_weights = balanced_class_weights(y_train) if params.task_spec.classifies else None

    with model_scope():
        model = build_model(seq_len, n_assets, n_features, **network_arguments(params, seed))
        initialise(model, dataset, params, train_idx, fine_tune)
        model = (compile_model(model, params, class_weights) if networks is None
                 else networks.start(model, params, class_weights))
    train_ds = window_batches(dataset.features, y_train, train_idx, seq_len, params.batch_size,
                              shuffle=True, seed=seed)
    val_ds = None
    if validate:
        y_val = training_targets(dataset, dataset.val_idx, params)
        val_ds = window_batches(dataset.features, y_val, dataset.val_idx, seq_len, EVAL_BATCH)
    timer = EpochTimer()
    start = time.perf_counter()
    fit = model.fit(train_ds, validation_data=val_ds, epochs=params.epochs if validate else len(schedule),
                    callbacks=make_callbacks(params, work_dir, timer, int(verbose > 0), schedule),
                    shuffle=False, verbose=verbose)
    fit_seconds = time.perf_counter() - start

    history = pd.DataFrame(fit.history)
    history.index.name = "epoch"
    info = {
        "task": params.task, "architecture": params.architecture, "output": params.resolved_output,
        "seed": seed,
        "backend": backends.name(), "device": backends.device(),
        "epochs_run": len(history),
        "best_epoch": int(history["val_loss"].idxmin()) + 1 if validate else len(history),
        "best_val_loss": float(history["val_loss"].min()) if validate else None,
        "learning_rates": history["learning_rate"].tolist() if "learning_rate" in history else None,
        "train_windows": len(train_idx),
        "init_from": params.init_from if fine_tune else None,
        "freeze_layers": params.freeze_layers if fine_tune else [],
        "epoch_seconds": timer.seconds, "fit_seconds": fit_seconds,
        "n_params": int(model.count_params()),
        "val_loss_persistence": validation_persistence_loss(dataset)
        if params.task_spec.forecasts_target and not params.distributional and validate else None,
        "params": params.model_dump(),
        "class_weights": None if class_weights is None else
        {"up": class_weights[0].tolist(), "down": class_weights[1].tolist()},
    }
    return TrainResult(model, history, info)


def refit(dataset: Dataset, params: RunParams, indices: np.ndarray, epochs: int, work_dir: Path,
          learning_rates: list[float] | None = None, verbose: int = 0) -> TrainResult:
    """The run's network trained again as 03 trained it (same seed, hyper-parameters and start)
    on `indices` for exactly `epochs` epochs, without validation: for production, once every
    window up to a day should count and none is left to hold out.

    `learning_rates`, 03's rate in each epoch (train.json), are replayed so that
    ReduceLROnPlateau's cuts fall where they fell; without them the starting rate holds throughout.
    """
    rates = list(learning_rates[:epochs]) if learning_rates else []
    rates += [rates[-1] if rates else params.resolved_learning_rate] * (epochs - len(rates))
    return train(dataset, params, work_dir, train_indices=np.asarray(indices), verbose=verbose,
                 fine_tune=True, schedule=rates)


class Network(Forecaster):
    """The network of `params` as a `Forecaster` (not registered: 04, 05 and 06 call it by name):
    `fit` trains it on some samples (early-stopped on the dataset's validation period, never its
    test period), `predict` runs it. `result` keeps the training's history and info. Networks
    fitted one after another may share `networks` (one traced graph); each must then predict
    before the next one fits."""

    name = "hybrid"

    def __init__(self, params: RunParams, work_dir: Path, seed: int | None = None, verbose: int = 0,
                 networks: CompiledNetworks | None = None):
        self.params, self.work_dir, self.seed, self.verbose = params, Path(work_dir), seed, verbose
        self.networks = networks

    def fit(self, dataset: Dataset, indices: np.ndarray) -> "Network":
        self.result = train(dataset, self.params, self.work_dir, seed=self.seed, train_indices=indices,
                            verbose=self.verbose, networks=self.networks)
        return self

    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        return predict(self.result.model, dataset, indices)

    def predict_distribution(self, dataset: Dataset, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return predict_distribution(self.result.model, dataset, indices)


def predict(model: keras.Model, dataset: Dataset, indices: np.ndarray,
            batch_size: int = EVAL_BATCH) -> np.ndarray:
    """The model's outputs for the given sample indices, shape (len(indices), n_assets): for a
    distribution network (output='distribution') its locations, the point forecast.

    Every batch holds exactly `batch_size` windows, one at a time: the last is filled up with
    copies of its last window, whose outputs are dropped. The model's predict function thus
    sees one input shape and is traced once. Keras's `predict` traced it again for a shorter
    last batch and for every other number of batches per call (up to `steps_per_execution`):
    three or four traces per network, and TensorFlow's retracing warning once five came close
    together (ensemble members, walk-forward folds).
    """
    outputs = network_outputs(model, dataset, indices, batch_size)
    return outputs[:, : outputs.shape[1] // 2] if is_distributional(model) else outputs


def predict_distribution(model: keras.Model, dataset: Dataset, indices: np.ndarray,
                         batch_size: int = EVAL_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """A distribution network's (location, scale) for the sample indices, each (len(indices), n_assets),
    in the target's scaled units."""
    if not is_distributional(model):
        raise ParameterError("this network forecasts a point, not a distribution; train it with "
                             "output='distribution'")
    outputs = network_outputs(model, dataset, indices, batch_size)
    half = outputs.shape[1] // 2
    return outputs[:, :half], outputs[:, half:]


def is_distributional(model: object) -> bool:
    """Whether a network's output is each asset's location and then its scale (output='distribution')."""
    return any(layer.name == "location_scale" for layer in getattr(model, "layers", []))


def network_outputs(model: keras.Model, dataset: Dataset, indices: np.ndarray,
                    batch_size: int = EVAL_BATCH) -> np.ndarray:
    """The model's whole output for the sample indices, batch by batch (see `predict`)."""
    indices = np.asarray(indices)
    filled = np.concatenate([indices, np.repeat(indices[-1:], -len(indices) % batch_size)])
    batches = window_batches(dataset.features, None, filled, dataset.seq_len, batch_size)
    outputs = [model.predict_on_batch(keras.utils.unpack_x_y_sample_weight(batch)[0]) for batch in batches]
    return np.concatenate(outputs)[: len(indices)]


def summary(info: dict) -> str:
    """03's account of a training in a few lines: where it started, how long it ran, its best
    validation loss and whether that beats persistence's on the same windows."""
    lines = []
    if info["init_from"]:
        lines.append(f"fine-tuned from run {info['init_from']}, frozen: {info['freeze_layers'] or 'none'}")
    median_epoch = float(np.median(info["epoch_seconds"]))
    lines.append(f"epochs run {info['epochs_run']}, best epoch {info['best_epoch']}, "
                 f"fit {info['fit_seconds']:.1f} s, median epoch {median_epoch:.2f} s")
    lines.append(f"best val_loss {info['best_val_loss']:.5f}")
    if info["val_loss_persistence"] is not None:
        verdict = "beats" if info["best_val_loss"] < info["val_loss_persistence"] else "does NOT beat"
        lines.append(f"persistence val MSE {info['val_loss_persistence']:.5f}: "
                     f"the model {verdict} persistence")
    return "\n".join(lines)


def save_training(run_dir: Path, result: TrainResult, work_dir: Path) -> None:
    """Write model.keras, history.csv and train.json atomically, then drop the work files.

    TensorBoard logs move from the work folder into the run folder.
    """
    run_dir = Path(run_dir)
    with atomic_path(store.artefact_path(run_dir, "03_train", store.MODEL)) as tmp:
        result.model.save(tmp)
    with atomic_path(store.artefact_path(run_dir, "03_train", store.HISTORY)) as tmp:
        result.history.to_csv(tmp)
    write_json(store.artefact_path(run_dir, "03_train", store.TRAIN_INFO), result.info)
    (Path(work_dir) / EPOCH_LOG).unlink(missing_ok=True)
    logs = Path(work_dir) / store.LOGS
    if logs.exists() and Path(work_dir) != run_dir:
        shutil.rmtree(store.artefact_path(run_dir, "03_train", store.LOGS), ignore_errors=True)
        os.replace(logs, store.artefact_path(run_dir, "03_train", store.LOGS))
