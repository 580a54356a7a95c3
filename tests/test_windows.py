import numpy as np
import pytest

from roicast.errors import DataError
from roicast.windows import make_windows, sample_indices, split_indices, targets_for


def guide_create_sequences(data, seq_len=60):
    """The training guide's loop, verbatim."""
    X, y = [], []
    for i in range(seq_len, len(data)):
        X.append(data[i - seq_len:i])
        y.append(data[i])
    return np.array(X), np.array(y)


def test_vectorised_windows_equal_the_guides_loop():
    data = np.random.default_rng(1).normal(size=(200, 5))
    X_loop, y_loop = guide_create_sequences(data, seq_len=60)
    idx = sample_indices(len(data), 60, horizon=1)
    np.testing.assert_array_equal(make_windows(data, idx, 60), X_loop)
    np.testing.assert_array_equal(targets_for(data, idx), y_loop)


def test_contiguous_windows_are_views_not_copies():
    data = np.arange(1000.0).reshape(250, 4)
    windows = make_windows(data, np.arange(60, 250), 60)
    assert np.shares_memory(windows, data)
    assert windows.shape == (190, 60, 4)


def test_scattered_indices_still_give_the_right_windows():
    data = np.arange(300.0).reshape(100, 3)
    windows = make_windows(data, np.array([10, 50, 20]), 10)
    np.testing.assert_array_equal(windows[1], data[40:50])
    np.testing.assert_array_equal(windows[2], data[10:20])


def test_split_is_chronological_with_gaps():
    split = split_indices(np.arange(60, 560), test_fraction=0.2, val_fraction=0.2, gap=5)
    assert split["train"][-1] + 5 < split["val"][0]
    assert split["val"][-1] + 5 < split["test"][0]
    assert len(split["test"]) == 100
    assert split["test"][-1] == 559


def test_split_of_too_few_windows_says_what_to_do():
    with pytest.raises(DataError, match="Too little history"):
        split_indices(np.arange(10), 0.2, 0.2, gap=5)
