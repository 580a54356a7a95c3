"""Batches of windows for the PyTorch and JAX backends, gathered from the daily series.

On TensorFlow the windows are gathered inside tf.data (`training.window_dataset`); the
other backends get the same windows from this `keras.utils.PyDataset`. The daily features
(days, assets, features) become rows of (days, assets × features), and sample i's window is
rows i - seq_len .. i - 1, as in `windows.make_windows`. The series and the targets are put
on the backend's device once, so on a GPU each batch is one gather there rather than a copy
of 60 days per window from host memory. Shuffled batches draw every epoch's order from one
NumPy generator seeded with the run's seed: the same seed gives the same batches in the
same order.
"""

import math

import keras
import numpy as np
from keras import ops


class WindowBatches(keras.utils.PyDataset):
    """(windows, targets) batches, or (windows,) without targets, for fit, evaluate, predict."""

    def __init__(self, features: np.ndarray, targets: np.ndarray | None, indices: np.ndarray,
                 seq_len: int, batch_size: int, shuffle: bool = False, seed: int = 0):
        super().__init__()
        self.series = ops.convert_to_tensor(features.reshape(len(features), -1), dtype="float32")
        self.targets = None if targets is None else ops.convert_to_tensor(targets, dtype="float32")
        self.indices = np.asarray(indices, dtype=np.int64)
        self.offsets = np.arange(-seq_len, 0, dtype=np.int64)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed) if shuffle else None
        self.order = self._draw_order()

    def _draw_order(self) -> np.ndarray:
        """Positions into `indices` for one epoch: a fresh permutation, or date order."""
        if self.rng is None:
            return np.arange(len(self.indices))
        return self.rng.permutation(len(self.indices))

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, batch: int) -> tuple:
        positions = self.order[batch * self.batch_size:(batch + 1) * self.batch_size]
        rows = self.indices[positions][:, None] + self.offsets
        windows = ops.take(self.series, ops.convert_to_tensor(rows), axis=0)
        if self.targets is None:
            return (windows,)
        return windows, ops.take(self.targets, ops.convert_to_tensor(positions), axis=0)

    def on_epoch_end(self) -> None:
        if self.rng is not None:
            self.order = self._draw_order()


class StackedBatches(keras.utils.PyDataset):
    """Several members' batches side by side, keyed by member name: ({name: windows}, {name: targets})."""

    def __init__(self, names: list[str], streams: list[WindowBatches]):
        super().__init__()
        self.names, self.streams = names, streams

    def __len__(self) -> int:
        return len(self.streams[0])

    def __getitem__(self, batch: int) -> tuple:
        parts = [stream[batch] for stream in self.streams]
        return ({n: p[0] for n, p in zip(self.names, parts, strict=True)},
                {n: p[1] for n, p in zip(self.names, parts, strict=True)})

    def on_epoch_end(self) -> None:
        for stream in {id(s): s for s in self.streams}.values():
            stream.on_epoch_end()
