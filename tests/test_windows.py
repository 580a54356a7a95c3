import numpy as np
import pandas as pd
import pytest

from roicast.errors import DataError
from roicast.features.windows import (
    default_test_years,
    make_windows,
    sample_indices,
    split_indices,
    target_years,
    year_splits,
)


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
    np.testing.assert_array_equal(data[idx], y_loop)  # horizon 1: the target row is the sample's own


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


def business_days(start: str, end: str) -> np.ndarray:
    """Samples 0..n-1 with one business day each as their target date."""
    return pd.bdate_range(start, end).to_numpy().astype("datetime64[D]")


def test_a_year_fold_tests_on_its_year_and_trains_only_before_it_with_gaps():
    dates = business_days("2010-01-01", "2016-12-31")
    samples = np.arange(len(dates))
    years = target_years(dates)
    folds = year_splits(samples, dates, [2014, 2015, 2016], val_fraction=0.2, gap=5)
    for year, fold in zip([2014, 2015, 2016], folds, strict=True):
        np.testing.assert_array_equal(fold["test"], samples[years == year])
        assert years[fold["val"]].max() < year and years[fold["train"]].max() < year
        assert fold["train"][-1] + 5 < fold["val"][0] and fold["val"][-1] + 5 < fold["test"][0]
        assert fold["train"][0] == 0, "expanding: training starts at the first sample"


def test_a_rolling_fold_trains_on_the_given_number_of_years_only():
    dates = business_days("2010-01-01", "2016-12-31")
    samples, years = np.arange(len(dates)), target_years(dates)
    [fold] = year_splits(samples, dates, [2016], val_fraction=0.2, gap=5, train_years=3)
    before = samples[(years >= 2013) & (years < 2016)]
    assert fold["train"][0] == before[0]
    assert len(fold["train"]) + len(fold["val"]) + 2 * 5 == len(before)


def test_test_years_start_after_the_training_years_and_end_with_the_data():
    dates = business_days("2010-03-01", "2016-06-30")
    assert default_test_years(dates, 2) == [2012, 2013, 2014, 2015, 2016]
    assert default_test_years(dates, 2, first_year=2015) == [2015, 2016]


def test_a_year_without_data_or_without_history_says_what_to_change():
    dates = business_days("2010-01-01", "2012-12-31")
    samples = np.arange(len(dates))
    with pytest.raises(DataError, match="No sample has its target in 2014"):
        year_splits(samples, dates, [2014], 0.2, gap=5)
    with pytest.raises(DataError, match="Too little history to test on 2010"):
        year_splits(samples, dates, [2010], 0.2, gap=5)
