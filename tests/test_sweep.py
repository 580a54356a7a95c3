"""Sweeps: a grid becomes validated runs on a dask LocalCluster, and a report that chooses on
validation only."""

import json
import random
import time

import pytest
import yaml

from roicast import cli, paths
from roicast.compute import cluster
from roicast.errors import ParameterError
from roicast.runs.artefacts import write_json
from roicast.runs.sweep import (
    choose,
    expand_grid,
    read_grid,
    run_sweep,
    sweep_id,
    validation_figures,
    write_sweep_report,
)

TINY = {"tickers": "AAPL,JPM,KO,XOM", "history_years": 2.0, "lstm_units": "8,4",
        "attention_heads": 1, "attention_key_dim": 4, "dense_units": 8, "epochs": 1,
        "n_members": 1}


def _grid(tmp_path, grid: dict):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_single_values_are_fixed_and_lists_multiply(tmp_path):
    grid = read_grid(_grid(tmp_path, {"seq_len": [30, 60], "scaler": ["minmax", "standard"],
                                      "epochs": 3}))
    combos = expand_grid(grid)
    assert len(combos) == 4 and all(combo["epochs"] == 3 for combo in combos)
    assert sweep_id(grid) == sweep_id(dict(reversed(list(grid.items()))))


def test_an_invalid_combination_stops_the_sweep_before_anything_runs(tmp_path):
    grid = read_grid(_grid(tmp_path, {"seq_len": [30, -1]}))
    with pytest.raises(ParameterError, match="seq_len"):
        expand_grid(grid)
    assert not paths.runs_dir().exists()


def test_a_grid_file_that_is_not_yaml_is_a_parameter_error(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("seq_len: [30, 60\nscaler: minmax\n")
    with pytest.raises(ParameterError, match="not valid YAML"):
        read_grid(path)


def test_an_empty_list_of_values_is_an_error_naming_the_parameter(tmp_path):
    with pytest.raises(ParameterError, match="seq_len has an empty list"):
        read_grid(_grid(tmp_path, {"seq_len": [], "epochs": 2}))


def test_an_unreachable_scheduler_fails_within_seconds_naming_its_address(tmp_path, capsys, monkeypatch):
    """Within the timeout roicast gives dask (dask's own is 30 s), here one second."""
    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT", "1s")
    address = "tcp://127.0.0.1:9"
    start = time.perf_counter()
    code = cli.main(["sweep", "--grid", str(_grid(tmp_path, {"seq_len": [30, 60]})),
                     "--scheduler", address])
    assert code == 2 and time.perf_counter() - start < 10
    assert address in capsys.readouterr().err


def _row(k: int, params: dict, loss: float, persistence_loss: float | None, r2: float,
         status: str = "succeeded") -> dict:
    return {"run_id": f"sweep-x-{k:03d}", "status": status, "params": params,
            "validation": validation_figures({"best_val_loss": loss,
                                              "val_loss_persistence": persistence_loss}),
            "test": {"r2_scaled": {"hybrid": r2}, "dm_vs_persistence": {"statistic": -1.0, "p_value": 0.3}}}


class _Untouchable(dict):
    """Test figures that fail the test if anything reads them."""

    def __getitem__(self, key):
        raise AssertionError(f"the choice read the test figure {key!r}")

    get = __getitem__


def test_the_choice_ignores_every_test_figure():
    rows = [_row(k, {"dropout_lstm": d}, loss, 0.02, r2) for k, (d, loss, r2) in
            enumerate([(0.1, 0.015, 0.30), (0.2, 0.012, 0.10), (0.3, 0.018, 0.50)])]
    rows.append(_row(3, {"dropout_lstm": 0.4}, 0.001, 0.02, 0.9, status="failed"))
    chosen = choose(rows, ["dropout_lstm"])
    assert chosen["run_id"] == "sweep-x-001" and chosen["metric"] == "relative_loss"
    assert chosen["ranking"] == ["sweep-x-001", "sweep-x-000", "sweep-x-002"]

    shuffled = [row["test"] for row in rows]
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        altered = [{**row, "test": test} for row, test in zip(rows, shuffled, strict=True)]
        assert choose(altered, ["dropout_lstm"]) == chosen
    adversarial = [{**row, "test": {"r2_scaled": {"hybrid": -9.0 if row is rows[1] else 0.99}}}
                   for row in rows]
    assert choose(adversarial, ["dropout_lstm"]) == chosen
    assert choose([{**row, "test": _Untouchable()} for row in rows], ["dropout_lstm"]) == chosen


def test_runs_validated_in_other_units_are_compared_relative_to_persistence():
    rows = [_row(0, {"scaler": "minmax"}, 0.010, 0.008, 0.2),   # 1.25 × persistence's
            _row(1, {"scaler": "standard"}, 0.50, 1.0, 0.1)]    # 0.5 × persistence's
    chosen = choose(rows, ["scaler"])
    assert chosen["run_id"] == "sweep-x-001" and chosen["metric"] == "relative_loss"
    assert "scaler" in chosen["rule"] and "not comparable" in chosen["rule"]


def test_without_a_persistence_reference_only_comparable_runs_are_chosen_among():
    same_days = [_row(0, {"dropout_lstm": 0.1}, 0.60, None, 0.5),
                 _row(1, {"dropout_lstm": 0.2}, 0.55, None, 0.4)]
    chosen = choose(same_days, ["dropout_lstm"])
    assert chosen["run_id"] == "sweep-x-001" and chosen["metric"] == "loss"
    other_days = [_row(0, {"seq_len": 30}, 0.60, None, 0.5), _row(1, {"seq_len": 60}, 0.55, None, 0.4)]
    nothing = choose(other_days, ["seq_len"])
    assert nothing["run_id"] is None and nothing["metric"] is None and "seq_len" in nothing["rule"]


def _fake_run(run_id: str, loss: float, r2: float, p_value: float) -> None:
    """train.json and metrics.json as a succeeded run leaves them, without running it."""
    run = paths.run_dir(run_id)
    write_json(run / "train.json", {"best_val_loss": loss, "val_loss_persistence": 0.02})
    write_json(run / "metrics.json", {
        "status": "succeeded", "metrics": {"scaled": {p: {"r2": r2} for p in ("hybrid", "ridge")}},
        "members": [{"seed": 42, "val_loss": loss, "r2": r2}, {"seed": 43, "val_loss": 2 * loss, "r2": r2}],
        "significance": {name: {"statistic": -2.5, "p_value": p_value}
                         for name in ("dm_vs_persistence", "dm_vs_ridge")}})


def test_the_sweep_page_and_json_keep_their_choice_when_the_test_period_changes():
    grid = {"dropout_lstm": [0.1, 0.2, 0.3], "epochs": [1]}
    combos, run_ids = expand_grid(grid), [f"sweep-x-{k:03d}" for k in range(3)]
    for run_id, loss, r2 in zip(run_ids, (0.015, 0.012, 0.018), (0.3, 0.1, 0.5), strict=True):
        _fake_run(run_id, loss, r2, p_value=0.01)
    index = write_sweep_report("sweep-x", grid, combos, run_ids)
    report = json.loads((index.parent / "sweep.json").read_text())
    assert report["chosen"]["run_id"] == "sweep-x-001" and report["grid"] == grid
    assert report["runs"][1]["validation"]["relative_loss"] == pytest.approx(0.6)
    assert report["runs"][1]["validation"]["members_relative_loss"] == pytest.approx(0.9)
    assert report["runs"][2]["test"]["r2_scaled"]["hybrid"] == 0.5
    page = index.read_text()
    assert "held-out check of a choice already made" in page and "Sorting by a test column" in page
    assert "(chosen)" in page and "statistic -2.50, p = 0.01" in page

    for run_id, r2 in zip(run_ids, (0.9, -5.0, 0.8), strict=True):  # other test prices, other scores
        _fake_run(run_id, {"sweep-x-000": 0.015, "sweep-x-001": 0.012, "sweep-x-002": 0.018}[run_id],
                  r2, p_value=0.9)
    index = write_sweep_report("sweep-x", grid, combos, run_ids)
    assert json.loads((index.parent / "sweep.json").read_text())["chosen"] == report["chosen"]


@pytest.mark.notebooks
def test_sweep_on_a_local_cluster_records_failures_and_skips_successes(tmp_path):
    grid_path = _grid(tmp_path, {**TINY, "seq_len": [20, 900]})
    index = run_sweep(grid_path, workers=2)
    report = json.loads((index.parent / "sweep.json").read_text())
    statuses = {row["params"]["seq_len"]: row["status"] for row in report["runs"]}
    assert statuses == {20: "succeeded", 900: "failed"}
    good = next(row for row in report["runs"] if row["status"] == "succeeded")
    assert good["test"]["r2_scaled"]["hybrid"] is not None and good["validation"]["relative_loss"] > 0
    assert report["chosen"]["run_id"] == good["run_id"] and report["chosen"]["metric"] == "relative_loss"
    page = index.read_text()
    assert "seq_len" in page and f"{good['run_id']}</a> (chosen)" in page
    assert (index.parent / "validation_by_parameter.png").exists()

    bad = next(row for row in report["runs"] if row["status"] == "failed")
    before = {row["run_id"]: (paths.run_dir(row["run_id"]) / "metrics.json").stat().st_mtime_ns
              for row in (good, bad)}
    run_sweep(grid_path, workers=2)
    assert (paths.run_dir(good["run_id"]) / "metrics.json").stat().st_mtime_ns == before[good["run_id"]]
    assert (paths.run_dir(bad["run_id"]) / "metrics.json").stat().st_mtime_ns != before[bad["run_id"]]
