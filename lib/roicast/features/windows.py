"""Sliding windows over the daily series, and the chronological split of the windows.

A sample `i` reads the feature rows `i - seq_len .. i - 1` and predicts the target row
`i + horizon - 1`, exactly as the guide's `create_sequences` loop (`X = data[i-60:i]`,
`y = data[i]`) does for horizon 1. Windows are NumPy views or built batch by batch
inside tf.data, never 60 copies of the data held at once.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from roicast.errors import DataError


def sample_indices(n_rows: int, seq_len: int, horizon: int = 1) -> np.ndarray:
    """Every sample index whose window and target lie inside `n_rows` rows."""
    return np.arange(seq_len, n_rows - horizon + 1)


def split_indices(samples: np.ndarray, test_fraction: float, val_fraction: float,
                  gap: int) -> dict[str, np.ndarray]:
    """Chronological train / val / test split with `gap` samples dropped between periods.

    The test period is the last `test_fraction` of the samples; validation the last
    `val_fraction` of what remains (the guide's `validation_split`); the gap keeps a
    smoothed target from sharing days with the next period's targets.
    """
    return _split(samples, int(round(len(samples) * test_fraction)), val_fraction, gap)


def _split(samples: np.ndarray, n_test: int, val_fraction: float, gap: int) -> dict[str, np.ndarray]:
    n = len(samples)
    n_rest = n - n_test - gap
    n_val = int(round(n_rest * val_fraction))
    n_train = n_rest - n_val - gap
    if min(n_train, n_val, n_test) < 1:
        raise DataError(
            f"Too little history: {n} windows cannot make train, validation and test periods "
            f"with a gap of {gap}. Use more dates (start earlier), a shorter seq_len, or "
            f"smaller fractions.")
    train = samples[:n_train]
    val = samples[n_train + gap:n_train + gap + n_val]
    test = samples[n - n_test:]
    return {"train": train, "val": val, "test": test}


def walk_forward_splits(samples: np.ndarray, n_folds: int, test_fraction: float,
                        val_fraction: float, gap: int) -> list[dict[str, np.ndarray]]:
    """Expanding-window folds, oldest first, each testing on a block of the test period's length.

    The last fold is the chain's own split; each earlier fold moves the test block back by
    its length and trains (and validates) on everything before it, minus the gaps.
    """
    n_test = int(round(len(samples) * test_fraction))
    ends = [len(samples) - k * n_test for k in reversed(range(n_folds))]
    try:
        return [_split(samples[:end], n_test, val_fraction, gap) for end in ends]
    except DataError:
        raise DataError(f"Too little history for {n_folds} walk-forward folds: the first fold "
                        f"would train on almost nothing ({len(samples)} windows, {n_test} per "
                        "test block). Use fewer walk_forward_folds or more dates.") from None


def rows_needed(seq_len: int, horizon: int, gap: int, smooth_window: int) -> int:
    """Fewest price rows that still give one sample in each period (for error messages)."""
    return 1 + (smooth_window - 1) + seq_len + horizon - 1 + 3 + 2 * gap


def window_view(features: np.ndarray, seq_len: int) -> np.ndarray:
    """All windows as a read-only view: `view[s]` holds rows `s .. s + seq_len - 1`."""
    view = sliding_window_view(features, seq_len, axis=0)
    return np.moveaxis(view, -1, 1)


def make_windows(features: np.ndarray, indices: np.ndarray, seq_len: int) -> np.ndarray:
    """Windows ending before each sample index: shape (len(indices), seq_len, *features.shape[1:]).

    A contiguous run of indices is returned as a view (no copy).
    """
    view = window_view(features, seq_len)
    starts = np.asarray(indices) - seq_len
    if len(starts) and np.array_equal(starts, np.arange(starts[0], starts[0] + len(starts))):
        return view[starts[0]:starts[0] + len(starts)]
    return view[starts]



def target_years(target_dates: np.ndarray) -> np.ndarray:
    """The calendar year of each date (datetime64), as integers."""
    return np.asarray(target_dates).astype("datetime64[Y]").astype(int) + 1970


def year_splits(samples: np.ndarray, target_dates: np.ndarray, test_years: list[int],
                val_fraction: float, gap: int, train_years: int | None = None) -> list[dict[str, np.ndarray]]:
    """One fold per test year: test on the samples whose target falls in that year, train and
    validate on the samples before it.

    `target_dates` holds each sample's target date. Training reaches back to the first sample
    (expanding) or only over the `train_years` calendar years before the test year (rolling);
    validation is its last `val_fraction`, and `gap` samples separate training, validation and
    test, as in `split_indices`, so no smoothed target shares a day with the test year.
    """
    samples, years = np.asarray(samples), target_years(target_dates)
    folds = []
    for year in test_years:
        n_test = int(np.sum(years == year))
        if n_test == 0:
            raise DataError(f"No sample has its target in {year}: the data cover "
                            f"{years.min()} to {years.max()}. Choose test years inside them.")
        first = years.min() if train_years is None else year - train_years
        pool = samples[(years >= first) & (years <= year)]
        try:
            folds.append(_split(pool, n_test, val_fraction, gap))
        except DataError:
            raise DataError(f"Too little history to test on {year}: {len(pool) - n_test} windows "
                            f"before it cannot make training and validation periods with a gap of "
                            f"{gap}. Start the test years later or use more dates.") from None
    return folds


def default_test_years(target_dates: np.ndarray, train_years: int,
                       first_year: int | None = None) -> list[int]:
    """Every year from `first_year` (default: the first that leaves `train_years` years of
    training) to the last year of the targets."""
    years = target_years(target_dates)
    start = years.min() + train_years if first_year is None else first_year
    return list(range(int(start), int(years.max()) + 1))
