"""Walk-forward folds: expanding training windows, test blocks that never reach back."""

import shutil

import numpy as np
import pandas as pd
import pytest

from roicast.config import RunParams, validate_params
from roicast.errors import DataError, ParameterError
from roicast.evaluation import walkforward
from roicast.features.preprocess import build_dataset
from roicast.features.windows import split_indices, walk_forward_splits

TINY = dict(seq_len=20, lstm_units=[8, 4], attention_heads=1, attention_key_dim=4,
            dense_units=8, epochs=1, batch_size=64)


def test_the_last_fold_is_the_chains_own_split_and_earlier_folds_expand():
    samples = np.arange(60, 760)
    folds = walk_forward_splits(samples, 3, test_fraction=0.2, val_fraction=0.2, gap=5)
    own = split_indices(samples, 0.2, 0.2, gap=5)
    for period in ("train", "val", "test"):
        np.testing.assert_array_equal(folds[-1][period], own[period])
    starts = [fold["test"][0] for fold in folds]
    assert starts == sorted(starts)
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert earlier["test"][-1] < later["test"][0]
        assert len(earlier["test"]) == len(later["test"])
        assert len(earlier["train"]) < len(later["train"])
    for fold in folds:
        assert fold["train"][-1] + 5 < fold["val"][0] and fold["val"][-1] + 5 < fold["test"][0]


def test_too_many_folds_says_what_to_change():
    with pytest.raises(DataError, match="walk_forward_folds"):
        walk_forward_splits(np.arange(60, 300), 6, 0.2, 0.2, gap=5)


def test_one_fold_is_refused():
    with pytest.raises(ParameterError, match="walk_forward_folds"):
        validate_params({"walk_forward_folds": 1})


def test_a_folds_scalers_see_only_its_own_training_days(small_prices):
    params = RunParams(walk_forward_folds=3, **TINY)
    arrays, _, _ = build_dataset(small_prices, params)
    first = walkforward.fold_splits(arrays, params)[0]
    fold_arrays, fold_scalers, _ = build_dataset(small_prices, params, split=first)
    cutoff = pd.Timestamp(fold_arrays.dates[first["train"][-1]])
    changed = small_prices.copy()
    later = changed.index > cutoff
    changed.loc[later] *= np.random.default_rng(1).uniform(0.5, 2, changed.loc[later].shape)
    _, changed_scalers, _ = build_dataset(changed, params, split=first)
    assert changed_scalers == fold_scalers


@pytest.mark.slow
def test_walk_forward_scores_every_fold_and_its_last_fold_matches_the_chain(small_prices, tmp_path,
                                                                          monkeypatch):
    """The folds share one traced network, and the last fold's is still the network the chain's
    own split gives when trained alone."""
    from roicast.evaluation import evaluate
    from roicast.models import training

    compiled = []
    original = training.compile_model
    monkeypatch.setattr(training, "compile_model", lambda *a, **k: compiled.append(1) or original(*a, **k))
    monkeypatch.setattr(walkforward, "COMPILED", training.CompiledNetworks())
    params = RunParams(walk_forward_folds=2, **TINY)
    arrays, scalers, _ = build_dataset(small_prices, params)
    folds = walkforward.walk_forward(small_prices, arrays, params, tmp_path, verbose=0)
    assert sorted(folds["fold"].unique()) == [1, 2]
    assert len(compiled) == 1, "the second fold trained the first fold's traced network"
    assert {"hybrid", "ridge", "persistence", "ceiling"} <= set(folds["predictor"])
    alone = training.train(arrays, params, tmp_path / "alone", verbose=0)
    shutil.rmtree(tmp_path / "alone")
    forecasts = {"hybrid": training.predict(alone.model, arrays, arrays.test_idx),
                 **evaluate.baseline_forecasts(arrays, scalers, arrays.test_idx)}
    own = evaluate.score(arrays, scalers, forecasts, arrays.test_idx)
    for name in ("hybrid", "ridge"):
        last = folds.query(f"fold == 2 and space == 'scaled' and predictor == '{name}' and metric == 'r2'")
        assert last["value"].item() == pytest.approx(own["scaled"][name]["r2"], rel=1e-9), name
    summary = walkforward.summarise(folds)
    values = folds.query("space == 'scaled' and predictor == 'ridge' and metric == 'r2'")["value"]
    assert summary["scaled"]["ridge"]["r2"]["mean"] == pytest.approx(values.mean())
    assert summary["scaled"]["ridge"]["r2"]["std"] == pytest.approx(values.std(ddof=1))
    assert not list(tmp_path.iterdir()), "fold work folders are removed"


@pytest.mark.slow
def test_a_distribution_network_is_scored_the_m6_way_in_every_fold(small_prices, tmp_path):
    from roicast.evaluation import distscore

    params = RunParams(walk_forward_folds=2, output="distribution", target="sum", horizon_days=5, **TINY)
    arrays, _, _ = build_dataset(small_prices, params)
    folds = walkforward.walk_forward(small_prices, arrays, params, tmp_path, verbose=0)
    scores = folds[folds["space"] == walkforward.DISTRIBUTION]
    assert set(scores["fold"]) == {1, 2}
    assert set(scores["predictor"]) == {"hybrid", "uniform", "covariance", "ridge_scale"}
    assert scores.query("predictor == 'uniform' and metric == 'crps'").empty, "uniform ranks have no CRPS"
    assert scores["value"].between(0, 0.3).all()
    own = distscore.for_run(arrays, 5).record()  # the last fold is the chain's own split
    last = scores[scores["fold"] == 2].set_index(["predictor", "metric"])["value"]
    for name in ("uniform", "covariance"):
        assert last[(name, "rps")] == pytest.approx(own["rps"][name], rel=1e-9)
    assert walkforward.summarise(folds)[walkforward.DISTRIBUTION]["hybrid"]["rps"]["mean"] > 0
