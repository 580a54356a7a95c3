"""The training guide's script, written exactly as the guide describes it.

One documented change: the guide's `np.log1p` of percent returns is replaced by log returns
in percent, `np.log1p(pct_change) * 100`; without it every loss worse than 1 % is NaN and
the script crashes on real prices (docs/architecture.md, "Known errors"). Everything else — back-fill,
a scaler fitted on all rows, the Python loop for sequences, `validation_split` — is the
guide's, leaks included, because this file is the yardstick, not a model to use.

Usage: python guide_train.py PRICES.csv OUT.json [--epochs N]
(The timer callback and the result file are measurement, not part of the guide.)
"""

import argparse
import json
import resource
import time

import numpy as np
import pandas as pd
from sklearn.preprocessing import MinMaxScaler
from tensorflow import keras
from tensorflow.keras import layers
from tensorflow.keras.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from tensorflow.keras.optimizers import AdamW

SEQ_LEN = 60
LSTM_UNITS_1 = 128
LSTM_UNITS_2 = 64
ATTENTION_HEADS = 4
ATTENTION_KEY_DIM = 64
DENSE_UNITS = 128
DROPOUT_LSTM = 0.2
DROPOUT_DENSE = 0.3
EPOCHS = 120
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4
VALIDATION_SPLIT = 0.2


def create_sequences(data, seq_len=60):
    """Create sliding window sequences"""
    X, y = [], []
    for i in range(seq_len, len(data)):
        X.append(data[i - seq_len:i])
        y.append(data[i])
    return np.array(X), np.array(y)


def build_hybrid_model(seq_len, n_assets):
    inputs = layers.Input(shape=(seq_len, n_assets))
    x = layers.Bidirectional(layers.LSTM(LSTM_UNITS_1 // 2, return_sequences=True))(inputs)
    x = layers.Dropout(DROPOUT_LSTM)(x)
    x = layers.Bidirectional(layers.LSTM(LSTM_UNITS_2 // 2, return_sequences=True))(x)
    x = layers.Dropout(DROPOUT_LSTM)(x)
    attention = layers.MultiHeadAttention(num_heads=ATTENTION_HEADS, key_dim=ATTENTION_KEY_DIM)(x, x)
    x = layers.Add()([x, attention])
    x = layers.LayerNormalization()(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(DENSE_UNITS, activation="relu")(x)
    x = layers.Dropout(DROPOUT_DENSE)(x)
    outputs = layers.Dense(n_assets, activation="linear")(x)
    return keras.Model(inputs, outputs)


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("prices")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--checkpoint", default="/tmp/hybrid_lstm_attention.keras")
    args = parser.parse_args()
    wall = time.perf_counter()
    keras.utils.set_random_seed(42)

    prices = pd.read_csv(args.prices, index_col=0, parse_dates=True)
    data = np.log1p(prices.pct_change()) * 100  # the one change: log returns in percent
    data = data.replace([np.inf, -np.inf], np.nan)
    data = data.ffill().bfill()
    data = data.rolling(5).mean().dropna()
    scaler = MinMaxScaler(feature_range=(0, 1))
    scaled = scaler.fit_transform(data)
    X, y = create_sequences(scaled, seq_len=SEQ_LEN)
    split = int(len(X) * 0.8)
    X_train, X_test, y_train, y_test = X[:split], X[split:], y[:split], y[split:]

    model = build_hybrid_model(SEQ_LEN, X.shape[2])
    optimizer = AdamW(learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY, beta_1=0.9,
                      beta_2=0.999, epsilon=1e-7)
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    timer = EpochTimer()
    callbacks = [
        ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5, min_lr=1e-6, verbose=1),
        EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True, verbose=1),
        ModelCheckpoint(args.checkpoint, monitor="val_loss", save_best_only=True, verbose=1),
        timer,
    ]
    fit_start = time.perf_counter()
    history = model.fit(X_train, y_train, validation_split=VALIDATION_SPLIT, epochs=args.epochs,
                        batch_size=BATCH_SIZE, callbacks=callbacks, verbose=2)
    fit_seconds = time.perf_counter() - fit_start
    predictions = model.predict(X_test, verbose=0)
    ss_res = ((y_test - predictions) ** 2).sum(axis=0)
    ss_tot = ((y_test - y_test.mean(axis=0)) ** 2).sum(axis=0)
    result = {
        "epoch_seconds": timer.seconds, "fit_seconds": fit_seconds,
        "wall_seconds": time.perf_counter() - wall,
        "best_val_loss": float(min(history.history["val_loss"])),
        "epochs_run": len(history.history["val_loss"]),
        "test_r2_scaled": float(np.mean(1 - ss_res / ss_tot)),
        "n_train": int(len(X_train)), "n_assets": int(X.shape[2]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
