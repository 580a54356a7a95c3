"""Train a network on the windows of 02_preprocess: seeds, input pipeline, callbacks, outputs.

The input pipeline gathers each batch's windows from the daily series inside tf.data
(no 60 copies of the data in memory), several batches run per call into the graph, and the
guide's callbacks (ReduceLROnPlateau, EarlyStopping, ModelCheckpoint) run beside
TensorBoard, CSVLogger and TerminateOnNaN. On a GPU the LSTMs take the cuDNN path; with
several GPUs the model is mirrored over them (tf.distribute.MirroredStrategy).

That is the TensorFlow backend, the default, whose numbers the benchmarks and tests pin.
On PyTorch or JAX (KERAS_BACKEND) the same windows come from a PyDataset
(`roicast.batches`), there is no TensorBoard log (its writer is TensorFlow's), and
TensorFlow need not be installed: roicast imports it only on its own backend (Keras
itself still imports it wherever it is installed).
"""

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

from roicast import backends, baselines
from roicast.artefacts import atomic_path, write_json
from roicast.baselines import SharedRidge, persistence
from roicast.batches import WindowBatches
from roicast.config import RunParams
from roicast.errors import DataError
from roicast.models import WeightedBinaryCrossentropy, build_model
from roicast.preprocess import direction_labels
from roicast.windows import make_windows, targets_for

if TYPE_CHECKING:
    import tensorflow as tf

CHECKPOINT = "checkpoint.keras"  # ModelCheckpoint's copy while training; model.keras when done
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


def check_finite(arrays: dict) -> None:
    """Stop before training if any input or target holds NaN or infinity."""
    for name in ("features", "target"):
        bad = ~np.isfinite(arrays[name])
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


def training_targets(arrays: dict, indices: np.ndarray, params: RunParams) -> np.ndarray:
    if params.task == "direction":
        return direction_labels(arrays, indices, params.direction_of)
    return targets_for(arrays["target"], indices, int(arrays["horizon"])).astype(np.float32)


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


def input_windows(arrays: dict, indices: np.ndarray) -> np.ndarray:
    """The network's inputs for some sample indices as one array, (n, seq_len, assets × features)."""
    windows = make_windows(arrays["features"], indices, int(arrays["seq_len"]))
    return windows.reshape(len(windows), windows.shape[1], -1)


def compile_model(model: keras.Model, params: RunParams, class_weights=None) -> keras.Model:
    """AdamW with the guide's settings; MSE + MAE for regression, weighted BCE for direction."""
    optimizer = keras.optimizers.AdamW(learning_rate=params.resolved_learning_rate,
                                       weight_decay=params.weight_decay, beta_1=0.9, beta_2=0.999,
                                       epsilon=1e-7, clipnorm=params.resolved_clipnorm)
    if params.task == "direction":
        loss = WeightedBinaryCrossentropy(*class_weights)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    else:
        loss, metrics = "mse", ["mae"]
    steps = 1 if backends.name() == "torch" else STEPS_PER_EXECUTION  # Keras on torch takes only 1
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, steps_per_execution=steps)
    return model


def warm_start_highway(model: keras.Model, arrays: dict, train_indices: np.ndarray,
                       output: str = "direct") -> None:
    """Start the linear highway at the shared ridge solution fitted on the training windows.

    Gradient descent on 60+ strongly collinear inputs converges slowly; the closed-form
    ridge start lets training spend its epochs on what the recurrent body adds. With
    `output='decomposed'` the highway forecasts tomorrow's raw return, so the ridge does too.
    """
    ridge = SharedRidge(int(arrays["seq_len"]), int(arrays["horizon"]))
    ridge.fit(arrays["features"], baselines.highway_target(arrays, output), train_indices)
    coef, intercept = ridge.model.coef_, ridge.model.intercept_
    model.get_layer("highway_linear").set_weights(
        [coef.reshape(-1, 1).astype(np.float32), np.array([intercept], dtype=np.float32)])


def validation_persistence_loss(arrays: dict) -> float:
    """MSE of persistence on the validation windows: the bar the model's val_loss must clear."""
    val_idx, horizon = arrays["val_idx"], int(arrays["horizon"])
    error = persistence(arrays["target"], val_idx) - targets_for(arrays["target"], val_idx, horizon)
    return float(np.mean(error**2))


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of every epoch."""

    def on_train_begin(self, logs=None):
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def make_callbacks(params: RunParams, work_dir: Path, timer: EpochTimer, verbose: int = 1) -> list:
    """The guide's three callbacks plus TensorBoard (TensorFlow backend only), CSVLogger,
    TerminateOnNaN and a timer."""
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=params.lr_factor,
                                          patience=params.lr_patience, min_lr=params.min_lr,
                                          verbose=verbose),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.early_stopping_patience,
                                      restore_best_weights=True, verbose=verbose),
        keras.callbacks.ModelCheckpoint(str(work_dir / CHECKPOINT), monitor="val_loss",
                                        save_best_only=True, verbose=0),
        keras.callbacks.TensorBoard(log_dir=str(work_dir / "logs"), write_graph=False),
        keras.callbacks.CSVLogger(str(work_dir / EPOCH_LOG)),
        keras.callbacks.TerminateOnNaN(),
        timer,
    ]
    if backends.name() == "tensorflow":
        return callbacks
    return [c for c in callbacks if not isinstance(c, keras.callbacks.TensorBoard)]


@dataclass
class TrainResult:
    model: keras.Model
    history: pd.DataFrame
    info: dict


def train(arrays: dict, params: RunParams, work_dir: Path, seed: int | None = None,
          train_indices: np.ndarray | None = None, verbose: int = 2) -> TrainResult:
    """Build, compile and fit the network of `params` on the training windows.

    Validation is the period after training (never the test period); the returned model
    holds the weights of the best validation epoch.
    """
    seed = params.seed if seed is None else seed
    set_seed(seed)
    check_finite(arrays)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    seq_len = int(arrays["seq_len"])
    n_days, n_assets, n_features = arrays["features"].shape
    train_idx = arrays["train_idx"] if train_indices is None else train_indices
    y_train = training_targets(arrays, train_idx, params)
    y_val = training_targets(arrays, arrays["val_idx"], params)
    class_weights = balanced_class_weights(y_train) if params.task == "direction" else None

    with model_scope():
        model = build_model(seq_len, n_assets, n_features, params, seed)
        if params.architecture == "highway" and params.task == "regression":
            warm_start_highway(model, arrays, train_idx, params.output)
        model = compile_model(model, params, class_weights)
    train_ds = window_batches(arrays["features"], y_train, train_idx, seq_len, params.batch_size,
                              shuffle=True, seed=seed)
    val_ds = window_batches(arrays["features"], y_val, arrays["val_idx"], seq_len, EVAL_BATCH)
    timer = EpochTimer()
    start = time.perf_counter()
    fit = model.fit(train_ds, validation_data=val_ds, epochs=params.epochs,
                    callbacks=make_callbacks(params, work_dir, timer, int(verbose > 0)), shuffle=False,
                    verbose=verbose)
    fit_seconds = time.perf_counter() - start

    history = pd.DataFrame(fit.history)
    history.index.name = "epoch"
    best_epoch = int(history["val_loss"].idxmin()) + 1
    info = {
        "task": params.task, "architecture": params.architecture, "seed": seed,
        "backend": backends.name(), "device": backends.device(),
        "epochs_run": len(history), "best_epoch": best_epoch,
        "best_val_loss": float(history["val_loss"].min()),
        "epoch_seconds": timer.seconds, "fit_seconds": fit_seconds,
        "n_params": int(model.count_params()),
        "val_loss_persistence": validation_persistence_loss(arrays) if params.task == "regression"
        else None,
        "params": params.model_dump(),
        "class_weights": None if class_weights is None else
        {"up": class_weights[0].tolist(), "down": class_weights[1].tolist()},
    }
    return TrainResult(model, history, info)


def predict(model: keras.Model, arrays: dict, indices: np.ndarray,
            batch_size: int = EVAL_BATCH) -> np.ndarray:
    """The model's outputs for the given sample indices, shape (len(indices), n_assets)."""
    ds = window_batches(arrays["features"], None, indices, int(arrays["seq_len"]), batch_size)
    return model.predict(ds, verbose=0)


def save_training(run_dir: Path, result: TrainResult, work_dir: Path) -> None:
    """Write model.keras, history.csv and train.json atomically, then drop the work files.

    TensorBoard logs move from the work folder into the run folder.
    """
    run_dir = Path(run_dir)
    with atomic_path(run_dir / "model.keras") as tmp:
        result.model.save(tmp)
    with atomic_path(run_dir / "history.csv") as tmp:
        result.history.to_csv(tmp)
    write_json(run_dir / "train.json", result.info)
    for name in (CHECKPOINT, EPOCH_LOG):
        (Path(work_dir) / name).unlink(missing_ok=True)
    logs = Path(work_dir) / "logs"
    if logs.exists() and Path(work_dir) != run_dir:
        shutil.rmtree(run_dir / "logs", ignore_errors=True)
        os.replace(logs, run_dir / "logs")
