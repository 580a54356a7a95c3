"""The guide's hybrid bidirectional-LSTM + multi-head-attention network, and its variants.

`guide` is the network of the training guide, layer for layer. `highway` adds a linear
autoregressive path from each asset's own window to its output, with one set of weights
shared by all assets (LSTNet's "highway"); the recurrent body starts at zero output and
learns what the linear path misses. The guide's network on its own loses to persistence
on the smoothed target (docs/architecture.md); the highway keeps the network honest.
"""

import math

import keras
from keras import layers, ops

from roicast.models import backends
from roicast.task import task_of


@keras.saving.register_keras_serializable(package="roicast")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy with balanced class weights per asset (output column).

    Keras's `class_weight` covers only single-output models; here each of the n_assets
    outputs has its own up/down balance, fitted on the training period.
    """

    def __init__(self, positive_weights, negative_weights, name="weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_weights = [float(w) for w in positive_weights]
        self.negative_weights = [float(w) for w in negative_weights]

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, y_pred.dtype)
        eps = keras.config.epsilon()
        y_pred = keras.ops.clip(y_pred, eps, 1 - eps)
        weights = (y_true * keras.ops.convert_to_tensor(self.positive_weights, y_pred.dtype)
                   + (1 - y_true) * keras.ops.convert_to_tensor(self.negative_weights, y_pred.dtype))
        loss = -(y_true * keras.ops.log(y_pred) + (1 - y_true) * keras.ops.log(1 - y_pred))
        return keras.ops.mean(weights * loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "positive_weights": self.positive_weights,
                "negative_weights": self.negative_weights}


@keras.saving.register_keras_serializable(package="roicast")
class GaussianNLL(keras.losses.Loss):
    """Mean Gaussian negative log-likelihood of the targets under the network's location and scale.

    The output holds, per window, the n assets' locations and then their scales (`Scale`).
    """

    def call(self, y_true, y_pred):
        n_assets = ops.shape(y_pred)[-1] // 2
        location, scale = y_pred[:, :n_assets], y_pred[:, n_assets:]
        z = (ops.cast(y_true, y_pred.dtype) - location) / scale
        return ops.mean(ops.log(scale) + 0.5 * ops.square(z), axis=-1) + 0.5 * math.log(2 * math.pi)


@keras.saving.register_keras_serializable(package="roicast")
class Scale(layers.Layer):
    """Each asset's scale: a fixed base (the training residuals' spread, set before training)
    times exp of what the network adds, that kept within ±`bound`, so the scale never reaches 0
    and training starts at the base with the head at zero."""

    def __init__(self, n_assets: int, bound: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.n_assets, self.bound = n_assets, bound
        self.base = self.add_weight(shape=(n_assets,), initializer="ones", trainable=False, name="base")

    def call(self, log_change):
        return self.base * ops.exp(ops.clip(log_change, -self.bound, self.bound))

    def get_config(self):
        return {**super().get_config(), "n_assets": self.n_assets, "bound": self.bound}


@keras.saving.register_keras_serializable(package="roicast")
class RecentVariance(layers.Layer):
    """Each asset's log variance of one input series over the last `spans` days of its window,
    less a per-asset centre set before training (`training.start_scale`): the recent volatility
    a scale forecast starts from, over a week, a month and the window (as HAR models of
    volatility do). Output (batch, assets, len(spans)); not trained."""

    def __init__(self, n_assets: int, n_features: int, feature_index: int, spans: list[int], **kwargs):
        super().__init__(**{**kwargs, "trainable": False})
        self.n_assets, self.n_features, self.feature_index = n_assets, n_features, feature_index
        self.spans = [int(span) for span in spans]
        self.centre = self.add_weight(shape=(n_assets, len(self.spans)), initializer="zeros",
                                      trainable=False, name="centre")

    def call(self, windows):
        steps = ops.shape(windows)[1]
        series = ops.reshape(windows, (-1, steps, self.n_assets, self.n_features))[..., self.feature_index]
        parts = [ops.log(ops.var(series[:, steps - span:, :], axis=1) + 1e-12) for span in self.spans]
        return ops.stack(parts, axis=-1) - self.centre

    def get_config(self):
        return {**super().get_config(), "n_assets": self.n_assets, "n_features": self.n_features,
                "feature_index": self.feature_index, "spans": self.spans}


def variance_spans(seq_len: int) -> list[int]:
    """The spans of `RecentVariance`: a week, a month and the whole window, as far as it reaches."""
    return sorted({min(span, seq_len) for span in (5, 20, seq_len)} - {1})


@keras.saving.register_keras_serializable(package="roicast")
class SelfAttention(layers.MultiHeadAttention):
    """Keras's multi-head attention, its two score products done as batched matmuls.

    The same layer, weights and outputs; only `_compute_attention` (Keras's documented point
    for a custom attention computation) differs. TensorFlow's einsum path, which Keras takes,
    transposes on every product and in its gradient. On a CPU at batch 128 the attention block's
    training step takes 43 ms this way against 63 ms, and an epoch of the guide's network 0.42 s
    against 0.48 s (benchmarks/README.md). Masked or causal attention, which roicast does not
    use, falls back to Keras's own computation.
    """

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, **kwargs):
        if attention_mask is not None or kwargs.get("use_causal_mask") or len(query.shape) != 4:
            return super()._compute_attention(query, key, value, attention_mask, training,
                                              return_attention_scores, **kwargs)
        heads_first = (0, 2, 1, 3)  # (batch, step, head, dim) -> (batch, head, step, dim)
        query = ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype))
        scores = ops.matmul(ops.transpose(query, heads_first), ops.transpose(key, (0, 2, 3, 1)))
        scores = self._masked_softmax(scores, None)
        weights = self._dropout_layer(scores, training=training) if self._dropout > 0 else scores
        output = ops.matmul(weights, ops.transpose(value, heads_first))
        return ops.transpose(output, heads_first), scores


def _lstm(units: int, init, name: str) -> layers.Layer:
    """A sequence-returning bidirectional LSTM.

    On a GPU the cuDNN kernel is used, under every backend (Keras has one for each); on a
    CPU the plain loop. (XLA was measured too: no faster on a CPU, 0.71 s against 0.62 s per
    epoch on the default data.)
    """
    use_cudnn = "auto" if backends.gpu_available() else False
    return layers.Bidirectional(layers.LSTM(units, return_sequences=True, kernel_initializer=init,
                                            use_cudnn=use_cudnn), name=name)


def _recurrent_attention_body(inputs, lstm_units: tuple[int, int], dropout_lstm: float,
                              attention_heads: int, attention_key_dim: int, dense_units: int,
                              dropout_dense: float, batch_norm: bool, seed: int):
    """Bi-LSTM → Bi-LSTM → self-attention + residual → LayerNorm → pooling → Dense."""
    init = keras.initializers.GlorotUniform(seed=seed)
    units_1, units_2 = lstm_units
    x = _lstm(units_1, init, "bilstm_1")(inputs)
    x = layers.Dropout(dropout_lstm, name="dropout_lstm_1")(x)
    x = _lstm(units_2, init, "bilstm_2")(x)
    x = layers.Dropout(dropout_lstm, name="dropout_lstm_2")(x)
    attended = SelfAttention(num_heads=attention_heads, key_dim=attention_key_dim,
                             kernel_initializer=init, name="attention")(x, x)
    x = layers.Add(name="residual")([x, attended])
    x = layers.LayerNormalization(name="layer_norm")(x)
    x = layers.GlobalAveragePooling1D(name="pooling")(x)
    x = layers.Dense(dense_units, activation="relu", kernel_initializer=init, name="dense")(x)
    if batch_norm:
        x = layers.BatchNormalization(name="batch_norm")(x)
    return layers.Dropout(dropout_dense, name="dropout_dense")(x)


@keras.saving.register_keras_serializable(package="roicast")
class KnownPart(layers.Layer):
    """Tomorrow's w-day mean from tomorrow's forecast raw return: the part the window already
    holds (its last w - 1 raw returns) plus the forecast, over w. This holds in the scaled space
    of `scale_by='asset'`, where one affine map serves both series.

    Not trained: with it, the network forecasts only tomorrow's own return.
    """

    def __init__(self, smooth_window: int, n_assets: int, n_features: int, raw_index: int, **kwargs):
        super().__init__(**{**kwargs, "trainable": False})
        self.smooth_window, self.n_assets = smooth_window, n_assets
        self.n_features, self.raw_index = n_features, raw_index

    def call(self, windows, forecast=None):
        steps = ops.shape(windows)[1]
        split = ops.reshape(windows, (-1, steps, self.n_assets, self.n_features))
        recent = split[:, steps - (self.smooth_window - 1):, :, self.raw_index]
        known = ops.sum(recent, axis=1)
        return (known if forecast is None else known + forecast) / self.smooth_window

    def get_config(self):
        return {**super().get_config(), "smooth_window": self.smooth_window, "n_assets": self.n_assets,
                "n_features": self.n_features, "raw_index": self.raw_index}


def _highway(inputs, seq_len: int, n_assets: int, n_features: int):
    """Linear map from each asset's window (seq_len × features) to its output, shared weights."""
    x = layers.Reshape((seq_len, n_assets, n_features), name="highway_split")(inputs)
    x = layers.Permute((2, 1, 3), name="highway_by_asset")(x)
    x = layers.Reshape((n_assets, seq_len * n_features), name="highway_flatten")(x)
    x = layers.Dense(1, name="highway_linear")(x)
    return layers.Reshape((n_assets,), name="highway")(x)


def build_model(seq_len: int, n_assets: int, n_features: int, *, architecture: str, task: str,
                lstm_units: tuple[int, int], dropout_lstm: float, attention_heads: int,
                attention_key_dim: int, dense_units: int, dropout_dense: float, output: str,
                smooth_window: int, raw_index: int | None, seed: int,
                distribution: bool = False) -> keras.Model:
    """The network of `architecture` (guide | highway) for `task` (regression | direction), uncompiled.

    Input: (seq_len, n_assets * n_features), each asset's features side by side.
    Output: one value per asset (a scaled return, or for `direction` a probability of up).
    With `output='decomposed'` the layers before `known_plus_forecast` forecast tomorrow's raw
    return (feature `raw_index`), and the output is the known part of the smoothed target plus
    that forecast, over `smooth_window`. With `distribution` the output is each asset's location
    (the value above) and then its scale (`Scale`, from a head of its own), for `GaussianNLL`.
    `training.network_arguments` unpacks a run's parameters.
    """
    spec = task_of(task)
    inputs = keras.Input(shape=(seq_len, n_assets * n_features), name="windows")
    body = _recurrent_attention_body(inputs, lstm_units, dropout_lstm, attention_heads, attention_key_dim,
                                     dense_units, dropout_dense, spec.batch_norm, seed)
    highway = architecture == "highway"
    head_init = "zeros" if highway else keras.initializers.GlorotUniform(seed=seed)
    outputs = layers.Dense(n_assets, kernel_initializer=head_init, name="head")(body)
    if highway:
        outputs = layers.Add(name="body_plus_highway")(
            [outputs, _highway(inputs, seq_len, n_assets, n_features)])
    if output == "decomposed":  # outputs so far: tomorrow's raw return
        outputs = KnownPart(smooth_window, n_assets, n_features, raw_index,
                            name="known_plus_forecast")(inputs, outputs)
    if spec.classifies:
        outputs = layers.Activation("sigmoid", name="probability_up")(outputs)
    if distribution:  # the scale: recent variance through shared weights, plus what the body adds
        recent = RecentVariance(n_assets, n_features, raw_index or 0, variance_spans(seq_len),
                                name="recent_variance")(inputs)
        linear = layers.Dense(1, kernel_initializer="zeros", name="scale_highway_linear")(recent)
        log_change = layers.Add(name="log_scale_change")([
            layers.Dense(n_assets, kernel_initializer="zeros", name="scale_head")(body),
            layers.Reshape((n_assets,), name="scale_highway")(linear)])
        outputs = layers.Concatenate(name="location_scale")(
            [outputs, Scale(n_assets, name="scale")(log_change)])
    return keras.Model(inputs, outputs, name=f"roicast_{architecture}_{task}")


def attention_scores(model: keras.Model, windows) -> "keras.KerasTensor":
    """Self-attention weights (batch, heads, query step, key step) for some input windows."""
    before = keras.Model(model.input, model.get_layer("dropout_lstm_2").output)
    hidden = before(windows, training=False)
    _, scores = model.get_layer("attention")(hidden, hidden, return_attention_scores=True,
                                             training=False)
    return scores


def load_model(path) -> keras.Model:
    """Load a saved model with Keras's safe mode (no arbitrary code from the file).

    A .keras file holds the architecture and the weights, not backend code: a model saved
    under one backend loads under any other.
    """
    return keras.models.load_model(path, safe_mode=True)
