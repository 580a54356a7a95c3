"""The command line stops on bad input before any notebook starts, with a message that helps."""

import pytest

from roicast import paths
from roicast.cli import main
from roicast.config import load_params, validate_params
from roicast.errors import ParameterError


def _run(capsys, *argv):
    code = main(["run", *argv])
    return code, capsys.readouterr().err


def test_a_wrong_type_names_the_parameter_and_what_it_accepts(capsys):
    code, err = _run(capsys, "-p", "epochs", "ten")
    assert code == 2
    assert "parameter 'epochs'" in err and "'ten'" in err and "integer" in err
    assert not paths.runs_dir().exists()


def test_an_unknown_parameter_lists_the_known_ones(capsys):
    code, err = _run(capsys, "-p", "nonsense", "1")
    assert code == 2
    assert "unknown parameter 'nonsense'" in err and "seq_len" in err
    assert not paths.runs_dir().exists()


def test_an_impossible_value_is_refused(capsys):
    code, err = _run(capsys, "-p", "scaler", "robust")
    assert code == 2 and "'minmax'" in err and "'standard'" in err


def test_only_on_a_new_run_needs_every_input_made_earlier_in_the_plan(capsys):
    code, err = _run(capsys, "--only", "04_evaluate", "--run-id", "fresh")
    assert code == 2
    assert "prices.parquet" in err and "01_collect" in err


def test_resume_on_a_run_that_does_not_exist_lists_the_runs(capsys):
    code, err = _run(capsys, "--resume", "--run-id", "fresh")
    assert code == 2
    assert "No run 'fresh'" in err and "Existing runs: none" in err


def test_only_without_earlier_steps_says_what_is_missing(capsys):
    paths.run_dir("early").mkdir(parents=True)
    (paths.run_dir("early") / "params.json").write_text("{}")
    code, err = _run(capsys, "--only", "04_evaluate", "--run-id", "early")
    assert code == 2
    assert "prices.parquet" in err and "01_collect" in err


def test_only_rejects_unknown_notebooks(capsys):
    code, err = _run(capsys, "--only", "06_deploy", "--run-id", "fresh")
    assert code == 2 and "06_deploy" in err and "01_collect" in err


def test_params_file_and_overrides_merge(tmp_path):
    grid = tmp_path / "params.yaml"
    grid.write_text("epochs: 3\nseq_len: 30\n")
    params = load_params(grid, [("epochs", "5"), ("tickers", "AAPL,MSFT")])
    assert (params.epochs, params.seq_len, params.tickers) == (5, 30, ["AAPL", "MSFT"])


def test_a_missing_params_file_is_a_clear_error(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_cross_field_rules():
    with pytest.raises(ParameterError, match="csv_path"):
        validate_params({"source": "csv"})
    with pytest.raises(ParameterError, match="before end"):
        validate_params({"start": "2022-01-01", "end": "2021-01-01"})
    assert validate_params({"task": "direction"}).resolved_learning_rate == 1e-4
    assert validate_params({}).resolved_clipnorm is None


def test_a_kernel_that_dies_marks_the_run_failed(capsys, monkeypatch):
    import json

    import papermill

    def dead_kernel(*args, **kwargs):
        raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(papermill, "execute_notebook", dead_kernel)
    code, err = _run(capsys, "--run-id", "dead")
    assert code == 2
    assert "01_collect failed: RuntimeError: Kernel died" in err
    metrics = json.loads((paths.run_dir("dead") / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "Kernel died" in metrics["error"]


def test_member_variants_come_from_the_command_line_and_are_checked():
    params = load_params(overrides=[("member_variants", "[{lstm_units: [32, 16]}, {dropout_lstm: 0.3}]")])
    assert params.member_variants == [{"lstm_units": [32, 16]}, {"dropout_lstm": 0.3}]
    assert params.with_variant(params.member_variants[0]).lstm_units == [32, 16]
    with pytest.raises(ParameterError, match="seq_len; a member may change only"):
        validate_params({"member_variants": [{"seq_len": 30}]})
    with pytest.raises(ParameterError, match="dropout_lstm"):
        validate_params({"member_variants": [{"dropout_lstm": 1.5}]})


@pytest.mark.parametrize("values, message", [
    ({"seed": 2**32}, "parameter 'seed': Input should be less than or equal to 4294967295"),
    ({"seed": 2**32 - 3, "n_members": 5}, "the last ensemble member's seed, must not exceed 4294967295"),
    ({"epochs": 1_000_000}, "parameter 'epochs': Input should be less than or equal to 10000"),
    ({"batch_size": 10**7}, "parameter 'batch_size'"),
    ({"attention_heads": 1000}, "parameter 'attention_heads'"),
    ({"dense_units": 10**6}, "parameter 'dense_units'"),
    ({"lstm_units": [64, 100_000]}, "lstm_units must be two integers from 1 to 4096"),
    ({"learning_rate": 5}, "parameter 'learning_rate'"),
    ({"weight_decay": float("nan")}, "parameter 'weight_decay': Input should be a finite number"),
    ({"trading_cost_bps": float("inf")}, "parameter 'trading_cost_bps'"),
    ({"min_lr": 0.01}, r"min_lr \(0.01\) must stay below the learning rate \(0.001\)"),
    ({"run_id": "r" * 101}, "parameter 'run_id'"),
    ({"csv_date_format": "dd/mm/yyyy"}, "is not a date format; write one with strftime codes"),
    ({"csv_decimal": ";"}, "parameter 'csv_decimal'"),
    ({"forecast_source": "csv"}, "forecast_source='csv' needs forecast_csv_path"),
    ({"forecast_csv_path": "new.csv", "source": "yahoo"}, "forecast_csv_path is read only when the "
     "forecast's prices come from a CSV, not from 'yahoo': add forecast_source='csv'"),
])
def test_every_bound_is_checked_before_anything_runs(values, message):
    with pytest.raises(ParameterError, match=message):
        validate_params(values)


def test_the_largest_seed_numpy_takes_is_accepted():
    import numpy as np

    params = validate_params({"seed": 2**32 - 2, "n_members": 2})
    np.random.default_rng(params.seed + params.n_members - 1)
    np.random.seed(params.seed + params.n_members - 1)


def test_a_seed_numpy_refuses_stops_the_command_line_before_01_runs(capsys):
    code, err = _run(capsys, "-p", "seed", str(2**32))
    assert code == 2 and "parameter 'seed'" in err and "4294967295" in err
    assert not paths.runs_dir().exists()


def test_an_unknown_parameter_suggests_the_nearest_one(capsys):
    code, err = _run(capsys, "-p", "seq_lenn", "30")
    assert code == 2 and "unknown parameter 'seq_lenn' (did you mean 'seq_len'?)" in err


def test_version_prints_the_package_version(capsys):
    import tomllib

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    version = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert done.value.code == 0 and capsys.readouterr().out == f"roicast {version}\n"


def test_what_a_notebook_prints_is_passed_on_line_by_line():
    from roicast.runs.runner import _Progress

    lines: list[str] = []
    progress = _Progress("03_train", lines.append)
    progress.write("Epoch 1/2\n10/10 - 1s - loss: 0.1")
    assert lines == ["    03 | Epoch 1/2"]
    progress.write("\n")
    assert lines[-1] == "    03 | 10/10 - 1s - loss: 0.1"


def test_a_folder_it_may_not_write_stops_the_command_in_one_line(capsys, monkeypatch):
    import errno

    from roicast.runs import runner, store

    locks = paths.runs_dir() / ".locks"

    def refused(run_id):
        raise PermissionError(errno.EACCES, "Permission denied", str(locks))

    monkeypatch.setattr(store, "acquire", refused)
    monkeypatch.setattr(runner, "_execute", lambda nb, *args: pytest.fail(f"{nb} was started"))
    code, err = _run(capsys, "--run-id", "locked-out")
    assert code == 2 and err == (f"roicast: error: {locks}: Permission denied; make it writable for this "
                                 "user, or set ROICAST_WORKDIR to a folder that is.\n")
