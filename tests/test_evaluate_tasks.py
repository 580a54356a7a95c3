"""The direction task and the raw target through 04 and 05's library calls, on synthetic outputs.

No network is trained: the "network" is a forecast made from the data (a noisy copy of the
truth, or a probability), so every check runs in seconds.
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from roicast import paths
from roicast.config import RunParams, validate_params
from roicast.errors import ParameterError
from roicast.evaluation import ensemble_scores, evaluate
from roicast.evaluation.significance import information_coefficient
from roicast.features.preprocess import build_dataset, scaler_from_dict, to_roi_pct, transform_stages
from roicast.models import ensemble
from roicast.runs import reports

SMALL = {"seq_len": 20}


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    frame = pd.read_csv(paths.SAMPLE_PRICES, index_col=0, parse_dates=True)
    frame.index.name = "date"
    return frame[["AAPL", "JPM", "KO", "XOM", "PG", "MSFT"]].iloc[-420:]


@pytest.fixture(scope="module")
def raw_run(prices):
    params = RunParams(**SMALL, target="raw")
    arrays, scalers, info = build_dataset(prices, params)
    return params, arrays, scalers, info


@pytest.fixture(scope="module")
def direction_run(prices):
    params = RunParams(**SMALL, task="direction")
    arrays, scalers, _ = build_dataset(prices, params)
    return params, arrays, scalers


def _noisy_truth(arrays: dict, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """A forecast that knows the target up to noise: clearly better than any baseline."""
    truth = arrays.target[arrays.test_idx]
    return truth + np.random.default_rng(seed).normal(0, noise, truth.shape)


def _probabilities(arrays: dict, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (len(arrays.test_idx), arrays.target.shape[1]))


def _member(seed: int, test: np.ndarray, val: np.ndarray) -> ensemble.Member:
    return ensemble.Member(seed, {}, 1.0 + seed / 10, 2, 0.1, test, val)


# --- parameters ---------------------------------------------------------------------------

def test_a_raw_target_resolves_to_the_direct_output():
    assert validate_params({"target": "raw"}).resolved_output == "direct"
    assert validate_params({}).resolved_output == "decomposed"


def test_a_raw_target_with_the_decomposed_output_is_refused_naming_both():
    with pytest.raises(ParameterError, match="target='raw'.*output='direct'"):
        validate_params({"target": "raw", "output": "decomposed"})


def test_a_raw_target_is_a_regression_target():
    with pytest.raises(ParameterError, match="direction_of"):
        validate_params({"target": "raw", "task": "direction"})


# --- the raw target -----------------------------------------------------------------------

def test_the_raw_target_is_the_next_days_log_return_scaled_like_the_raw_feature(raw_run, prices):
    params, arrays, scalers, info = raw_run
    raw_index = list(arrays.feature_names).index("raw")
    np.testing.assert_array_equal(arrays.target, arrays.features[..., raw_index])
    np.testing.assert_array_equal(arrays.target_pct, arrays.raw_pct)
    np.testing.assert_allclose(to_roi_pct(arrays.target, scalers), arrays.raw_pct, atol=1e-4)
    assert str(arrays.target_of) == "raw" and info["params"]["target"] == "raw"
    assert "smoothed" in list(arrays.feature_names)  # still an input
    assert scaler_from_dict(scalers["target"]).scale_.tolist() == scalers["features"]["raw"]["scale_"]
    assert "smoothed log return %" not in transform_stages(prices, arrays)


def test_the_raw_targets_baselines_are_zero_mean_yesterday_and_ridge_without_a_ceiling(raw_run):
    _, arrays, scalers, _ = raw_run
    idx = arrays.test_idx
    forecasts = evaluate.baseline_forecasts(arrays, scalers, idx)
    assert set(forecasts) == {"zero", "persistence", "train_mean", "ridge"}
    roi = evaluate.in_both_spaces(forecasts, scalers)["roi_pct"]
    np.testing.assert_allclose(roi["zero"], 0, atol=1e-9)
    np.testing.assert_allclose(roi["persistence"], arrays.raw_pct[idx - 1], atol=1e-4)
    np.testing.assert_allclose(roi["train_mean"][0], arrays.raw_pct[arrays.train_idx].mean(axis=0),
                               atol=1e-4)
    assert evaluate.error_overlap(arrays) == 1


def test_a_raw_target_is_scored_on_tomorrows_return_with_the_shared_formula(raw_run):
    params, arrays, scalers, _ = raw_run
    idx = arrays.test_idx
    result = evaluate.score_models(arrays, scalers, _noisy_truth(arrays), params, idx)
    assert set(result.metrics["scaled"]) == {"hybrid", "zero", "persistence", "train_mean", "ridge"}
    assert "headroom_share" not in result.metrics["scaled"]["hybrid"]
    assert set(result.unknown_part) == {"hybrid", "zero", "persistence", "ridge"}  # train_mean: the reference
    hybrid_pct = to_roi_pct(result.forecasts["hybrid"], scalers)
    actual, train = arrays.raw_pct[idx], arrays.raw_pct[arrays.train_idx]
    majority = float(np.mean((actual > 0) == ((train > 0).mean(axis=0) >= 0.5)))
    expected = evaluate.tomorrow_scores(actual, hybrid_pct, train.mean(axis=0), majority)
    assert json.dumps(result.unknown_part["hybrid"], sort_keys=True) == json.dumps(expected, sort_keys=True)
    hybrid = result.unknown_part["hybrid"]
    assert hybrid["r2_vs_train_mean"] > 0.5 and hybrid["direction_acc"] > 0.8
    assert hybrid["dm_vs_train_mean"]["statistic"] < 0 and hybrid["ic_t"] > 2
    assert "No evidence" not in evaluate.unknown_part_verdict(result.unknown_part, target="raw")
    assert np.isnan(result.unknown_part["zero"]["ic_mean"])  # a constant forecast ranks nothing


def test_a_raw_target_forecasts_several_days_by_feeding_its_return_back(raw_run):
    from roicast.evaluation import multistep

    params, arrays, scalers, _ = raw_run
    raw_index = [str(name) for name in arrays.feature_names].index("raw")
    n_assets = len(arrays.assets)

    class YesterdaysReturn:
        def predict_on_batch(self, windows):
            return windows[:, -1].reshape(len(windows), n_assets, -1)[..., raw_index]

    steps = multistep.recursive_forecast(YesterdaysReturn(), arrays, scalers, arrays.test_idx[:5], 3)
    np.testing.assert_allclose(steps[0], arrays.target[arrays.test_idx[:5] - 1], rtol=1e-6)
    np.testing.assert_allclose(steps[2], steps[0], atol=1e-5)  # each day's forecast is fed back as observed
    assert evaluate.multi_step_off(params.model_copy(update={"horizon_steps": 3})) is None
    assert evaluate.multi_step_off(RunParams()) is not None  # horizon_steps 1: off


def test_a_constant_forecast_has_no_information_coefficient_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ic = information_coefficient(np.zeros((30, 4)), np.random.default_rng(0).normal(size=(30, 4)))
    assert np.isnan(ic["mean"]) and np.isnan(ic["t_stat"]) and ic["n_days"] == 0


def test_the_raw_target_ensemble_is_recorded_like_the_smoothed_one(raw_run, tmp_path):
    params, arrays, scalers, _ = raw_run
    members = [_member(seed, _noisy_truth(arrays, seed), arrays.target[arrays.val_idx])
               for seed in (1, 2)]
    scores = ensemble_scores.score_ensemble(arrays, scalers, members, params)
    assert "ceiling" not in scores.table.index and "zero" in scores.table.index
    coverages = ensemble_scores.interval_coverage(arrays, members, params)
    parts = ensemble_scores.record(tmp_path / "ensemble.json", members, scores, 1.0, coverages)
    assert set(parts["metrics"]) == {"scaled", "roi_pct"} and parts["members"][0]["r2"] > 0.5
    assert len(ensemble_scores.backtest(arrays, scalers, members, params)) == len(arrays.test_idx)


# --- the direction task -------------------------------------------------------------------

def test_the_direction_task_scores_the_network_against_the_majority_class(direction_run, capsys):
    params, arrays, scalers = direction_run
    idx = arrays.test_idx
    result = evaluate.score_models(arrays, scalers, _probabilities(arrays), params, idx)
    assert set(result.classification) == {"hybrid", "majority"}
    assert {"accuracy", "precision", "recall", "roc_auc", "p_value_vs_majority"} <= set(
        result.classification["hybrid"])
    assert result.metrics == {} and result.table("scaled") is None
    assert "direction task" in capsys.readouterr().out
    assert set(result.per_asset["space"]) == {"classification"}
    assert list(result.frame.columns) == ["date", "asset", "actual", "hybrid", "majority"]
    assert len(result.frame) == len(idx) * len(arrays.assets)
    assert result.accuracy_by_asset().shape == (len(arrays.assets), 2)
    saved = result.record(walk_forward=None, multi_step=None, data={})
    assert saved["classification"]["hybrid"] == result.classification["hybrid"]


def test_the_direction_ensemble_and_its_members_are_recorded(direction_run, tmp_path):
    params, arrays, scalers = direction_run
    n_val = len(arrays.val_idx)
    members = [_member(seed, _probabilities(arrays, seed), np.full((n_val, len(arrays.assets)), 0.5))
               for seed in (1, 2, 3)]
    scores = ensemble_scores.score_ensemble(arrays, scalers, members, params)
    assert scores.metric == "accuracy" and {"ensemble", "majority", "member_1"} <= set(scores.table.index)
    assert "members average" in scores.verdict()
    assert ensemble_scores.interval_coverage(arrays, members, params) == {}
    parts = ensemble_scores.record(tmp_path / "ensemble.json", members, scores, 1.0, {"level": 0.9})
    assert set(parts["classification"]) == {"ensemble"} and "metrics" not in parts
    assert [set(m) >= {"accuracy", "roc_auc", "p_value_vs_majority"} for m in parts["members"]] == [True] * 3
    assert len(ensemble_scores.backtest(arrays, scalers, members, params)) == len(arrays.test_idx)


# --- the headline, the run page and the page of runs --------------------------------------

DIRECTION_METRICS = {
    "run_id": "dir", "status": "succeeded", "params": {"task": "direction", "source": "sample"},
    "metrics": {},
    "classification": {name: {"accuracy": acc, "precision": 0.5, "recall": 0.6, "roc_auc": 0.51,
                              "p_value_vs_majority": 0.2}
                       for name, acc in (("hybrid", 0.52), ("majority", 0.53), ("ensemble", 0.54))}}
REGRESSION_METRICS = {
    "run_id": "reg", "status": "succeeded", "params": {"task": "regression", "target": "raw"},
    "metrics": {space: {name: {"r2": r2, "mae": 1.0, "direction_acc": 0.5}
                        for name, r2 in (("hybrid", -0.01), ("zero", -0.02))}
                for space in ("scaled", "roi_pct")}}


def test_the_direction_headline_holds_the_network_the_ensemble_and_the_majority_class():
    rows = reports.headline_rows(DIRECTION_METRICS)
    assert [row["predictor"] for row in rows] == ["hybrid", "ensemble", "majority"]
    assert rows[0]["accuracy"] == rows[0]["direction_acc"] == rows[0]["headline"] == 0.52
    assert rows[0]["r2_scaled"] is None and rows[0]["p_value_vs_majority"] == 0.2
    labels = [label for _, label, _ in reports.headline_columns(DIRECTION_METRICS)]
    assert labels[:2] == ["accuracy", "ROC AUC"]
    regression = reports.headline_rows(REGRESSION_METRICS)
    assert [row["predictor"] for row in regression] == ["hybrid", "zero"]
    assert regression[0]["headline"] == regression[0]["r2_scaled"] == -0.01


def test_the_headline_shows_every_predictor_scored_with_the_networks_first():
    """A model plugged in by `model_plugins` reaches the command line and the pages like a baseline."""
    scored = {name: {"r2": 0.1, "mae": 1.0, "direction_acc": 0.5}
              for name in ("hybrid", "zero", "toy", "ensemble")}
    metrics = {**REGRESSION_METRICS, "metrics": {"scaled": scored, "roi_pct": scored}}
    shown = [row["predictor"] for row in reports.headline_rows(metrics)]
    assert shown == ["hybrid", "ensemble", "zero", "toy"]


def test_run_pages_show_accuracy_for_direction_and_r2_for_regression():
    for metrics in (DIRECTION_METRICS, REGRESSION_METRICS):
        folder = paths.report_dir(metrics["run_id"])
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(metrics))
        page = reports.write_run_index(folder, metrics).read_text()
        assert ("ROC AUC" in page and "0.520" in page) if metrics is DIRECTION_METRICS else \
            ("R² (scaled)" in page and "-0.010" in page and "ROC AUC" not in page)
    index = reports.write_reports_index().read_text()
    assert "acc 0.520" in index and "acc 0.530" in index and "-0.010" in index and ">raw<" in index
