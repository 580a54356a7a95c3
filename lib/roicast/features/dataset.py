"""The one data shape of roicast: the daily series of 02_preprocess and the split of its samples.

A sample `i` reads the feature rows `i - seq_len .. i - 1` and is scored on the target row
`i + horizon - 1` (`Dataset.target_rows`); every step after 02 reads a `Dataset`, never the
arrays of dataset.npz one by one, so that offset is written once.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roicast.features.windows import make_windows
from roicast.runs.artefacts import read_npz, write_npz

PERIODS = ("train", "val", "test")


def _no_samples() -> np.ndarray:
    return np.array([], dtype=np.int64)


@dataclass(frozen=True)
class Dataset:
    """Daily series (one row per trading day, one column per asset) and sample indices per period.

    `features` (days, assets, features) and `target` (days, assets) are scaled; `target_pct` is
    the target in ROI percent, `raw_pct` each day's own log return in percent (clipped as the
    inputs are), `returns_pct` the same before clipping. A 'sum' target (`target_of`) sums the
    `horizon_days` daily returns up to its row, which `horizon` reaches. A dataset of new prices
    for a forecast (`preprocess.series_until`) has no split: its index arrays are empty.
    """

    features: np.ndarray
    target: np.ndarray
    target_pct: np.ndarray
    raw_pct: np.ndarray
    returns_pct: np.ndarray
    dates: np.ndarray
    assets: np.ndarray
    feature_names: np.ndarray
    seq_len: int
    horizon: int
    smooth_window: int
    scale_by: str
    target_of: str = "smoothed"
    horizon_days: int = 1
    train_idx: np.ndarray = field(default_factory=_no_samples)
    val_idx: np.ndarray = field(default_factory=_no_samples)
    test_idx: np.ndarray = field(default_factory=_no_samples)

    @classmethod
    def load(cls, path: Path) -> "Dataset":
        """dataset.npz as written by `save` (files from before `target_of` hold the smoothed target)."""
        arrays = read_npz(path)
        scalars = {"seq_len": int, "horizon": int, "smooth_window": int, "scale_by": str, "target_of": str,
                   "horizon_days": int}
        values = {name: kind(arrays.pop(name)) for name, kind in scalars.items() if name in arrays}
        return cls(**values, **arrays)

    def save(self, path: Path) -> Path:
        return write_npz(Path(path), **{f.name: np.asarray(getattr(self, f.name))
                                        for f in dataclasses.fields(self)})

    def indices(self, period: str) -> np.ndarray:
        """The sample indices of 'train', 'val' or 'test'."""
        return getattr(self, f"{period}_idx")

    def target_rows(self, indices: np.ndarray, series: str | np.ndarray = "target") -> np.ndarray:
        """Each sample's row of a daily series (`target`, `target_pct`, `raw_pct`, `returns_pct`,
        or any array with a row per day): the day its target falls on."""
        values = getattr(self, series) if isinstance(series, str) else series
        return values[np.asarray(indices) + self.horizon - 1]

    def windows(self, indices: np.ndarray, series: np.ndarray | None = None) -> np.ndarray:
        """The samples' input windows, (len(indices), seq_len, assets, features), or their windows
        of another daily series."""
        return make_windows(self.features if series is None else series, indices, self.seq_len)

    def replace(self, **changes) -> "Dataset":
        """A copy with some fields changed (another split, another horizon); arrays are shared."""
        return dataclasses.replace(self, **changes)

    @property
    def n_assets(self) -> int:
        return self.features.shape[1]
