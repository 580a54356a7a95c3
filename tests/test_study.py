"""The year-by-year study: scores on tomorrow's return, their summary over years, the verdict."""

import contextlib
import io
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from roicast import plots
from roicast.config import RunParams
from roicast.data import sources
from roicast.evaluation import evaluate, study, walkforward
from roicast.evaluation.significance import binomial_direction_test
from roicast.features.preprocess import build_dataset
from roicast.runs.artefacts import jsonable

TINY = dict(seq_len=20, lstm_units=[4, 4], attention_heads=1, attention_key_dim=4,
            dense_units=8, epochs=2, batch_size=128)


@pytest.fixture
def dataset(small_prices):
    """Four assets of the bundled data, their scalers, and every baseline's test forecasts."""
    params = RunParams(**TINY)
    arrays, scalers, _ = build_dataset(small_prices, params)
    forecasts = evaluate.baseline_forecasts(arrays, scalers, arrays.test_idx)
    return arrays, scalers, forecasts


@pytest.fixture(scope="module")
def four_years() -> pd.DataFrame:
    """Four assets of the bundled data, 2019 to 2022: three test years after one of training."""
    return sources.read_sample(["AAPL", "JPM", "KO", "XOM"], "2019-01-01", None, 4)


def test_a_perfect_smoothed_forecast_implies_tomorrows_return_exactly(dataset):
    arrays, scalers, forecasts = dataset
    test = arrays.test_idx
    perfect = {"hybrid": arrays.target[test]}
    implied = study.raw_return_forecasts(arrays, scalers, perfect, test)["hybrid"]
    np.testing.assert_allclose(implied, arrays.raw_pct[test], atol=1e-4)
    scores = study.fold_scores(arrays, scalers, perfect, test)["hybrid"]
    assert scores["r2_vs_train_mean"] == pytest.approx(1, abs=1e-6)
    assert scores["ic_mean"] == pytest.approx(1)


def test_persistence_is_yesterdays_return_and_the_training_mean_has_r2_zero(dataset):
    arrays, scalers, forecasts = dataset
    test = arrays.test_idx
    raw = study.raw_return_forecasts(arrays, scalers, forecasts, test)
    np.testing.assert_array_equal(raw["persistence"], arrays.raw_pct[test - 1])
    scores = study.fold_scores(arrays, scalers, forecasts, test)
    assert set(scores) == set(study.PREDICTORS) - {"hybrid"}
    assert scores["train_mean"]["r2_vs_train_mean"] == pytest.approx(0, abs=1e-12)


def test_smoothed_forecasts_score_as_evaluate_unknown_part_scores_them(dataset):
    arrays, scalers, forecasts = dataset
    test = arrays.test_idx
    named = {"hybrid": forecasts["ridge"] * 0.9 + 0.01, "ridge": forecasts["ridge"]}
    mine = study.fold_scores(arrays, scalers, named, test)
    theirs = evaluate.unknown_part(arrays, scalers, named, test)
    for name in named:
        for metric in ("r2_vs_train_mean", "ic_mean", "ic_t", "direction_acc", "majority_acc",
                       "p_direction_vs_majority", "mae"):
            assert mine[name][metric] == pytest.approx(theirs[name][metric], rel=1e-9), (name, metric)


def year_params(**changes) -> RunParams:
    return RunParams(walk_forward_unit="year", walk_forward_train="rolling", walk_forward_train_years=1,
                     **{**TINY, **changes})


def folds_frame(ic: dict[str, list[float]], sd: float = 0.2, days: int = 250) -> pd.DataFrame:
    """Walk-forward records of yearly ICs (one fold per year from 2001), with fixed other scores."""
    records = []
    for name, values in ic.items():
        for k, value in enumerate(values):
            scores = {(study.SPACE, "ic_mean"): value, (study.SPACE, "ic_sd"): sd,
                      (study.SPACE, "ic_days"): days, (study.SPACE, "r2_vs_train_mean"): value / 10,
                      (study.SPACE, "direction_acc"): 0.5 + value, (study.SPACE, "majority_acc"): 0.5,
                      (study.SPACE, "n"): days * 20, ("scaled", "r2"): 0.6}
            records += [{"fold": k + 1, "label": str(2001 + k), "test_start": "", "test_end": "",
                         "space": space, "predictor": name, "metric": metric, "value": v}
                        for (space, metric), v in scores.items()]
    return pd.DataFrame.from_records(records)


def test_over_years_each_year_is_one_observation():
    hybrid = [0.03, 0.01, 0.05, -0.01]
    table = study.overall(folds_frame({"hybrid": hybrid, "ridge": [0.0] * 4}))
    row = table.loc["hybrid"]
    assert row["ic_mean"] == pytest.approx(np.mean(hybrid))
    assert row["ic_t"] == pytest.approx(stats.ttest_1samp(hybrid, 0).statistic)
    assert row["years_ic_positive"] == 3 and row["years"] == 4
    correct = int(round(sum((0.5 + v) * 5000 for v in hybrid)))
    pooled = binomial_direction_test(correct, 20_000, 0.5)
    assert row["direction_acc"] == pytest.approx(pooled["accuracy"])
    assert row["p_direction_vs_majority"] == pytest.approx(pooled["p_value"])


def test_the_band_is_the_mean_daily_ic_plus_minus_its_standard_error():
    frame = study.ic_by_year(folds_frame({"hybrid": [0.02, 0.04]}, sd=0.25, days=100))
    half = stats.norm.ppf(0.975) * 0.25 / 10
    np.testing.assert_allclose(frame["high"] - frame["ic"], half)
    np.testing.assert_allclose(frame["ic"] - frame["low"], half)
    assert list(frame["label"]) == ["2001", "2002"]
    assert plots.plot_ic_by_year(frame).axes


def test_the_verdict_claims_the_target_only_when_computed():
    steady = [0.03, 0.025, 0.035, 0.03, 0.028]
    met = study.verdict(folds_frame({"hybrid": steady, "ridge": [0.0, 0.01, -0.01, 0.0, 0.005]}))
    assert met.endswith("met.") and "not met" not in met
    noise = [0.02, -0.03, 0.01, -0.02, 0.015]
    none = study.verdict(folds_frame({"hybrid": noise, "ridge": [0.0] * 5}))
    assert "No evidence of skill" in none and none.endswith("not met.")
    both = study.verdict(folds_frame({"hybrid": steady, "ridge": steady}))
    assert both.endswith("not met."), "the ridge reaching it too is no win for the network"
    assert "no conclusion" in study.verdict(folds_frame({"hybrid": [0.05], "ridge": [0.0]}))


def test_a_failed_fold_is_reported_and_the_others_kept(four_years, monkeypatch, tmp_path, capsys):
    prices = four_years
    params = year_params()
    arrays, _, _ = build_dataset(prices, params)
    labels = walkforward.fold_labels(arrays, params)

    def fake_fold(prices, params, fold, label, split, verbose=0, *, out_dir):
        if fold == 1:
            raise ValueError("no luck")
        return walkforward.Fold(fold, label, {p: {"start": "", "end": ""} for p in ("train", "test")},
                                [{"fold": fold, "label": label, "space": "training", "predictor": "hybrid",
                                  "metric": "fold_seconds", "value": 1.0}])

    monkeypatch.setattr(walkforward, "run_fold", fake_fold)
    frame = walkforward.walk_forward(prices, arrays, params, tmp_path)
    assert labels == ["2020", "2021", "2022"]
    assert frame.attrs["failed"] == {labels[0]: "ValueError: no luck"}
    assert list(frame["label"]) == labels[1:]
    assert f"{labels[0]} FAILED: ValueError: no luck" in capsys.readouterr().out


def test_a_fold_averages_its_members_seeds(monkeypatch, tmp_path):
    seeds = []

    def fake_train(arrays, params, work, seed, verbose, train_indices, networks):
        seeds.append(seed)
        return SimpleNamespace(model=seed, info={"fit_seconds": seed, "epochs_run": 2, "best_val_loss": 1.0})

    monkeypatch.setattr(walkforward.training, "train", fake_train)
    monkeypatch.setattr(walkforward.training, "predict", lambda model, arrays, idx: np.full((2, 3), model))
    fold = SimpleNamespace(train_idx=np.arange(5), val_idx=np.arange(5, 7), test_idx=np.arange(2),
                           target_of="smoothed")  # what train_members reads
    output, fit, distributions = walkforward.train_members(fold, year_params(walk_forward_members=3, seed=10),
                                                           tmp_path, verbose=0)
    assert seeds == [10, 11, 12]
    np.testing.assert_array_equal(output, np.full((2, 3), 11.0))
    assert fit == {"fit_seconds": 11.0, "epochs_run": 2.0, "best_val_loss": 1.0}
    assert distributions is None, "a point network has no distribution to score"


@pytest.fixture(scope="module")
def three_years(four_years, tmp_path_factory) -> tuple[pd.DataFrame, str]:
    """Three yearly folds of a tiny network trained in this process, and what they printed."""
    params = year_params()
    arrays, _, _ = build_dataset(four_years, params)
    work = tmp_path_factory.mktemp("folds")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        frame = walkforward.walk_forward(four_years, arrays, params, work, verbose=0)
    assert not list(work.iterdir()), "fold work folders are removed"
    return frame, printed.getvalue()


@pytest.mark.slow
def test_three_yearly_folds_end_to_end(three_years):
    frame, printed = three_years
    assert sorted(frame["label"].unique()) == ["2020", "2021", "2022"]
    for _, fold in frame.groupby("label"):
        assert fold["test_start"].iloc[0][:4] == fold["test_end"].iloc[0][:4] == fold["label"].iloc[0]
    returns = frame[frame["space"] == study.SPACE]
    assert set(returns["predictor"]) == set(study.PREDICTORS)
    assert [line[:5] for line in printed.splitlines()] == ["[1/3]", "[2/3]", "[3/3]"]
    part = walkforward.record(frame)
    json.dumps(jsonable(part))
    assert part["failed"] == {} and part["verdict"].startswith("Over 3 test year(s)")
    table = walkforward.summary_table(frame, study.SPACE, "ic_mean")
    assert list(table.columns) == ["2020", "2021", "2022", "mean", "std"]


@pytest.mark.slow
def test_folds_on_a_dask_cluster_are_the_folds_trained_here(four_years, three_years, tmp_path, capsys):
    params = year_params(walk_forward_first_year=2022)
    arrays, _, _ = build_dataset(four_years, params)
    frame = walkforward.walk_forward(four_years, arrays, params, tmp_path, workers=2)
    assert capsys.readouterr().out.count("[1/1] 2022") == 1
    here = three_years[0].query("label == '2022'").drop(columns="fold")
    keys = ["label", "space", "predictor", "metric"]
    merged = frame.drop(columns="fold").merge(here, on=[*keys, "test_start", "test_end"],
                                              suffixes=("", "_here"))
    scores = merged[merged["space"] != "training"]
    assert len(scores) == len(here[here["space"] != "training"])
    np.testing.assert_allclose(scores["value"], scores["value_here"], rtol=1e-4, atol=1e-6)
