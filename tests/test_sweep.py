"""Sweeps: a grid becomes validated runs on a dask LocalCluster, and a sortable report."""

import json

import pytest
import yaml

from roicast import paths
from roicast.errors import ParameterError
from roicast.sweep import expand_grid, read_grid, run_sweep, sweep_id

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


@pytest.mark.notebooks
def test_sweep_on_a_local_cluster_records_failures_and_skips_successes(tmp_path):
    grid_path = _grid(tmp_path, {**TINY, "seq_len": [20, 900]})
    index = run_sweep(grid_path, workers=2)
    report = json.loads((index.parent / "sweep.json").read_text())
    statuses = {row["params"]["seq_len"]: row["status"] for row in report["runs"]}
    assert statuses == {20: "succeeded", 900: "failed"}
    good = next(row for row in report["runs"] if row["status"] == "succeeded")
    assert good["hybrid"] is not None and good["persistence"] is not None
    assert "seq_len" in index.read_text() and (index.parent / "metric_by_parameter.png").exists()

    before = (paths.run_dir(good["run_id"]) / "metrics.json").stat().st_mtime_ns
    run_sweep(grid_path, workers=2)
    assert (paths.run_dir(good["run_id"]) / "metrics.json").stat().st_mtime_ns == before
