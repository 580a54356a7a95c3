"""Ensemble members trained side by side as one model: one `fit`, one trace, every core busy.

A member is a small network; trained alone it keeps barely one core busy and pays its own
graph trace (and, in a process of its own, its own TensorFlow import). Here each member is
an independent branch of one Keras model, with its own input stream (its seed's shuffle
order, its own bootstrap resample), its own loss, learning rate, ReduceLROnPlateau and early
stopping, and the best weights of its own best epoch. The branches share no weight, and the
total loss is the sum of theirs, so each branch's gradient is its member's alone; AdamW
and per-variable gradient clipping act on each variable apart. A member whose early stopping
fires is frozen (its learning rate set to zero) while the others go on; the fit ends when
every member has stopped. Members whose settings a single fit cannot share (batch size,
epochs, weight decay, clipping) train in stacks of their own.
"""

import time
from collections.abc import Iterable
from dataclasses import dataclass

import keras
import numpy as np

from roicast.config import RunParams
from roicast.features.batches import StackedBatches, WindowBatches
from roicast.features.dataset import Dataset
from roicast.models import backends
from roicast.models.hybrid import build_model
from roicast.models.training import (
    EVAL_BATCH,
    STEPS_PER_EXECUTION,
    balanced_class_weights,
    initialise,
    loss_and_metrics,
    network_arguments,
    set_seed,
    training_targets,
    window_batches,
    window_dataset,
)


@dataclass
class MemberSpec:
    """One member to train: its seed, its variant, its parameters (the run's with the variant)
    and its training windows."""

    seed: int
    variant: dict
    params: RunParams
    train_indices: np.ndarray

    @property
    def name(self) -> str:
        return f"member_{self.seed}"


@dataclass
class StackedMember:
    """What training left of one member: its network at its best epoch and its record."""

    model: keras.Model
    best_val_loss: float
    epochs_run: int
    fit_seconds: float


def shared_settings(params: RunParams) -> tuple:
    """The settings every member of one stack must have in common."""
    return (params.batch_size, params.epochs, params.weight_decay, params.resolved_clipnorm)


def stacks(specs: Iterable[MemberSpec]) -> list[list[MemberSpec]]:
    """The members grouped into stacks that one fit can train, in seed order within each."""
    grouped: dict[tuple, list[MemberSpec]] = {}
    for spec in specs:
        grouped.setdefault(shared_settings(spec.params), []).append(spec)
    return list(grouped.values())


class MemberAdamW(keras.optimizers.Adam):
    """AdamW (decoupled weight decay) with one learning rate per member.

    `member_of[i]` is the member of the i-th trainable variable; `rates` hold each member's
    learning rate, which its ReduceLROnPlateau cuts and its early stopping sets to zero.
    """

    def __init__(self, member_of: list[int], rates: list[float], decay: float, **kwargs):
        super().__init__(learning_rate=max(rates), **kwargs)
        self.member_of, self.initial_rates, self.decay = member_of, rates, decay

    def build(self, variables):
        super().build(variables)
        self.rates = [self.add_variable((), initializer=keras.initializers.Constant(rate),
                                        name=f"member_rate_{k}")
                      for k, rate in enumerate(self.initial_rates)]

    def update_step(self, gradient, variable, learning_rate):
        rate = self.rates[self.member_of[self._get_variable_index(variable)]]
        rate = keras.ops.cast(rate, variable.dtype)
        if self.decay:
            variable.assign(variable - variable * keras.ops.cast(self.decay, variable.dtype) * rate)
        super().update_step(gradient, variable, rate)


class _Rate:
    """The learning-rate face of one member, for Keras's ReduceLROnPlateau."""

    def __init__(self, variable):
        self.variable = variable

    @property
    def learning_rate(self):
        return self.variable

    @learning_rate.setter
    def learning_rate(self, value):
        self.variable.assign(value)


class _MemberView:
    """What Keras's EarlyStopping and ReduceLROnPlateau touch of a model, for one member."""

    def __init__(self, network: keras.Model, rate):
        self.network, self.optimizer, self.stop_training = network, _Rate(rate), False

    def get_weights(self):
        return self.network.get_weights()

    def set_weights(self, weights):
        self.network.set_weights(weights)


class MemberSteering(keras.callbacks.Callback):
    """Each member's own ReduceLROnPlateau and EarlyStopping on its own validation loss.

    The callbacks are Keras's, each given a view of one member, so their rules are exactly
    those of a member trained alone.
    """

    def __init__(self, names: list[str], networks: list[keras.Model], params: list[RunParams]):
        super().__init__()
        self.names, self.networks, self.member_params = names, networks, params

    def on_train_begin(self, logs=None):
        rates = self.model.optimizer.rates
        self.views = [_MemberView(net, rate) for net, rate in zip(self.networks, rates, strict=True)]
        self.steering = []
        for view, params in zip(self.views, self.member_params, strict=True):
            pair = (keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=params.lr_factor,
                                                      patience=params.lr_patience,
                                                      min_lr=params.min_lr, verbose=0),
                    keras.callbacks.EarlyStopping(monitor="val_loss",
                                                  patience=params.early_stopping_patience,
                                                  restore_best_weights=True, verbose=0))
            for callback in pair:
                callback.set_model(view)
                callback.on_train_begin()
            self.steering.append(pair)
        self.val_losses: list[list[float]] = [[] for _ in self.names]
        self.stopped = [False] * len(self.names)

    def on_epoch_end(self, epoch, logs=None):
        for k, name in enumerate(self.names):
            if self.stopped[k]:
                continue
            key = f"val_{name}_loss" if len(self.names) > 1 else "val_loss"  # Keras's names for one output
            own = {"val_loss": float(logs[key])}
            self.val_losses[k].append(own["val_loss"])
            for callback in self.steering[k]:
                callback.on_epoch_end(epoch, dict(own))
            if self.views[k].stop_training:
                self.stopped[k] = True
                self.views[k].optimizer.learning_rate = 0.0
        if all(self.stopped):
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for _, early_stopping in self.steering:
            early_stopping.on_train_end()


def _train_stream(dataset: Dataset, spec: MemberSpec, y: np.ndarray):
    """One member's shuffled training windows, made (as a lone training makes them) right after
    its seed is set: TensorFlow's shuffle takes the global seed in force when it is created."""
    if backends.name() == "tensorflow":
        return window_dataset(dataset.features, y, spec.train_indices, dataset.seq_len,
                              spec.params.batch_size, shuffle=True, seed=spec.seed)
    return WindowBatches(dataset.features, y, spec.train_indices, dataset.seq_len, spec.params.batch_size,
                         shuffle=True, seed=spec.seed)


def _zipped(names: list[str], streams: list):
    """The members' streams side by side: ({name: windows}, {name: targets}) per step."""
    if backends.name() != "tensorflow":
        return StackedBatches(names, streams)
    import tensorflow as tf

    return tf.data.Dataset.zip(tuple(streams)).map(
        lambda *pairs: ({n: p[0] for n, p in zip(names, pairs, strict=True)},
                        {n: p[1] for n, p in zip(names, pairs, strict=True)}))


def _val_batches(dataset: Dataset, specs: list[MemberSpec]):
    """The validation windows, the same for every member, under each member's name."""
    names = [s.name for s in specs]
    y = training_targets(dataset, dataset.val_idx, specs[0].params)
    if backends.name() == "tensorflow":
        plain = window_batches(dataset.features, y, dataset.val_idx, dataset.seq_len, EVAL_BATCH)
        return plain.map(lambda x, t: ({n: x for n in names}, {n: t for n in names}))
    plain = WindowBatches(dataset.features, y, dataset.val_idx, dataset.seq_len, EVAL_BATCH)
    return StackedBatches(names, [plain] * len(names))


def _loss(params: RunParams, y_train: np.ndarray):
    weights = balanced_class_weights(y_train) if params.task_spec.classifies else None
    return loss_and_metrics(params, weights)[0]


def build_stack(dataset: Dataset, specs: list[MemberSpec],
                targets: list[np.ndarray]) -> tuple[keras.Model, list[keras.Model], list]:
    """The members' networks and training streams, each made as a lone training makes them, and
    the model that holds the networks side by side, compiled with each member's loss and
    learning rate."""
    n_days, n_assets, n_features = dataset.features.shape
    networks, streams, inputs, outputs, member_of, losses = [], [], {}, {}, [], {}
    for k, (spec, y) in enumerate(zip(specs, targets, strict=True)):
        set_seed(spec.seed)  # the layers' initial weights and dropout seeds of a lone training
        net = build_model(dataset.seq_len, n_assets, n_features, **network_arguments(spec.params, spec.seed))
        initialise(net, dataset, spec.params, spec.train_indices, fine_tune=False)
        streams.append(_train_stream(dataset, spec, y))
        net.name = f"{spec.name}_network"
        inputs[spec.name] = keras.Input(shape=net.input_shape[1:], name=spec.name)
        outputs[spec.name] = net(inputs[spec.name])
        losses[spec.name] = _loss(spec.params, y)
        member_of += [k] * len(net.trainable_variables)
        networks.append(net)
    stack = keras.Model(inputs, outputs, name="member_stack")
    params = specs[0].params
    optimizer = MemberAdamW(member_of, [s.params.resolved_learning_rate for s in specs],
                            params.weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                            clipnorm=params.resolved_clipnorm)
    steps = 1 if backends.name() == "torch" else STEPS_PER_EXECUTION
    stack.compile(optimizer=optimizer, loss=losses, steps_per_execution=steps)
    stack.optimizer.build(stack.trainable_variables)
    zeros = {name: np.zeros((1, n_assets), dtype="float32") for name in outputs}
    stack.compute_metrics(None, zeros, zeros)  # the loss trackers now, not inside the first trace
    stack.reset_metrics()
    return stack, networks, streams


def train_stack(dataset: Dataset, specs: list[MemberSpec]) -> list[StackedMember]:
    """Train the members of one stack together; each comes back at its own best epoch."""
    targets = [training_targets(dataset, s.train_indices, s.params) for s in specs]
    stack, networks, streams = build_stack(dataset, specs, targets)
    names = [s.name for s in specs]
    steering = MemberSteering(names, networks, [s.params for s in specs])
    start = time.perf_counter()
    stack.fit(_zipped(names, streams), validation_data=_val_batches(dataset, specs),
              epochs=specs[0].params.epochs, callbacks=[steering, keras.callbacks.TerminateOnNaN()],
              shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    trained = []
    for k, net in enumerate(networks):
        losses = steering.val_losses[k]
        net.name = f"roicast_{specs[k].params.architecture}_{specs[k].params.task}"
        trained.append(StackedMember(net, float(np.min(losses)), len(losses), seconds))
    return trained
