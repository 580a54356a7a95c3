"""MLflow tracking (a local store and a tracking server on localhost) and the served forecast.

Every test reads the tiny chain (tests/chain.py): nothing is trained here. One tracking server
and one model server start per module; the model is logged once, from the tiny run, and
answers over HTTP what `roicast forecast` answers on the same prices.
"""

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from roicast import paths
from roicast.cli import main
from roicast.runs import sweep
from tests import chain

on_the_tiny_chain = pytest.mark.notebooks  # it runs every notebook once; `roicast forecast` runs 06
BIN = Path(sys.executable).parent  # the environment's scripts: mlflow, and the uvicorn it starts
MLFLOW = str(BIN / "mlflow")
ASSETS = chain.TINY["tickers"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(command: list[str], url: str, log: Path, env: dict | None = None,
           timeout: float = 180) -> subprocess.Popen:
    """Start a server in its own process group and wait for its health check."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                                        **(env or {})})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{command[:3]} exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    _stop(process)
    pytest.fail(f"{command[:3]} did not answer within {timeout} s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def tracked(tiny_chain, tmp_path_factory):
    """The tiny run logged to the default store of its own work folder: (work folder, store URI,
    MLflow run id)."""
    pytest.importorskip("mlflow")
    from roicast.runs import tracking

    folder = tmp_path_factory.mktemp("tracked")
    chain.copy_into(tiny_chain[0], folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROICAST_WORKDIR", str(folder))
        uri = tracking.default_uri()
        yield folder, uri, tracking.log_run(chain.RUN_ID)


@pytest.fixture(scope="module")
def served(tracked, tmp_path_factory):
    """`mlflow models serve` on the tiny run's logged model, on a free localhost port: its URL."""
    import mlflow

    folder, uri, mlflow_id = tracked
    model = mlflow.MlflowClient(uri).get_run(mlflow_id).outputs.model_outputs[0].model_id
    port = _free_port()
    process = _serve([MLFLOW, "models", "serve", "-m", f"models:/{model}", "--env-manager", "local",
                      "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                     f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("serve") / "serve.log",
                     env={"MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "2"})
    yield f"http://127.0.0.1:{port}"
    _stop(process)


@pytest.fixture
def tiny_here(tiny_chain, workdir):
    """This test's own copy of the tiny chain."""
    chain.copy_into(tiny_chain[0], workdir)
    return workdir


def _expected_metrics(run_dir: Path) -> dict[str, float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    return {f"{space}.{predictor}.{name}": value for space, predictors in metrics.items()
            for predictor, values in predictors.items() for name, value in values.items()
            if isinstance(value, float) and np.isfinite(value)}


def _assert_logged_as_recorded(client, mlflow_id: str, run_dir: Path) -> None:
    """The MLflow run holds metrics.json's metrics, run.json's timings and params, history.csv."""
    logged = client.get_run(mlflow_id).data
    expected = _expected_metrics(run_dir)
    assert len(expected) > 50
    assert {name: logged.metrics[name] for name in expected} == expected
    record = json.loads((run_dir / "run.json").read_text())
    assert {nb: logged.metrics[f"time_s.{nb}"] for nb in paths.NOTEBOOKS} == record["timings_s"]
    assert logged.params["epochs"] == "2" and json.loads(logged.params["tickers"]) == ASSETS
    history = pd.read_csv(run_dir / "history.csv")
    val_loss = client.get_metric_history(mlflow_id, "train.val_loss")
    assert [(m.step, m.value) for m in sorted(val_loss, key=lambda m: m.step)] == list(
        zip(history["epoch"], history["val_loss"], strict=True))
    assert logged.tags["roicast.run_id"] == chain.RUN_ID and logged.tags["roicast.source"] == "sample"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.REPO_ROOT, capture_output=True,
                          text=True).stdout.strip()
    assert logged.tags["roicast.commit"].startswith(head)


@on_the_tiny_chain
def test_a_run_logged_to_the_local_store_holds_what_the_run_recorded(tracked):
    import mlflow

    folder, uri, mlflow_id = tracked
    client = mlflow.MlflowClient(uri)
    run_dir = folder / "data" / "runs" / chain.RUN_ID
    _assert_logged_as_recorded(client, mlflow_id, run_dir)
    assert uri == f"sqlite:///{folder.resolve() / 'mlflow.db'}" and (folder / "mlartifacts").is_dir()
    assert client.get_run(mlflow_id).info.status == "FINISHED"
    artefacts = {a.path for a in client.list_artifacts(mlflow_id, "run")}
    assert {"run/metrics.json", "run/model.keras", "run/history.csv"} <= artefacts
    assert "report/03_train.html" in {a.path for a in client.list_artifacts(mlflow_id, "report")}
    models = client.get_run(mlflow_id).outputs.model_outputs
    assert len(models) == 1 and client.get_logged_model(models[0].model_id).name == "forecaster"


@on_the_tiny_chain
def test_a_tracking_server_on_localhost_receives_the_same_run(tiny_here, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from roicast.runs import tracking

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve([MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                     "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                     "--artifacts-destination", str(tmp_path / "server-artefacts")], url,
                    tmp_path / "server.log",  # without its job runner, whose consumers import MLflow again
                    env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        mlflow_id = tracking.log_run(chain.RUN_ID, url, model=False)
        _assert_logged_as_recorded(mlflow.MlflowClient(url), mlflow_id, paths.run_dir(chain.RUN_ID))
        assert (tmp_path / "server-artefacts").rglob("metrics.json"), "artefacts went through the server"
    finally:
        _stop(server)


def _payload(prices: pd.DataFrame, **params) -> dict:
    table = prices.reset_index()
    table["date"] = table["date"].dt.strftime("%Y-%m-%d")
    split = {"columns": list(table.columns), "data": table.to_numpy().tolist()}
    return {"dataframe_split": split, **({"params": params} if params else {})}


@on_the_tiny_chain
def test_the_served_model_answers_what_roicast_forecast_does(served, tiny_here, tmp_path, capsys):
    prices = pd.read_parquet(paths.run_dir(chain.RUN_ID) / "prices.parquet").iloc[:-3]  # asof: 3 days back
    prices.to_csv(tmp_path / "new.csv")
    assert main(["forecast", "--run-id", chain.RUN_ID, "-p", "forecast_source", "csv",
                 "-p", "forecast_csv_path", str(tmp_path / "new.csv"), "--quiet"]) == 0
    asof = f"{prices.index[-1]:%Y-%m-%d}"
    expected = pd.read_parquet(paths.run_dir(chain.RUN_ID) / "forecasts" / f"{asof}.parquet")
    answer = requests.post(f"{served}/invocations", json=_payload(prices), timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    got = pd.DataFrame(answer.json()["predictions"])
    assert set(got["model"]) == {"hybrid", "ensemble", "ridge", "persistence"} and set(got["step"]) == {
        1, 2, 3, 4, 5}
    assert list(got.columns) == list(expected.columns) and len(got) == len(expected)
    expected = expected.assign(date=expected["date"].dt.strftime("%Y-%m-%d"))
    pd.testing.assert_frame_equal(got[["date", "asset", "step", "model", "method"]],
                                  expected[["date", "asset", "step", "model", "method"]], check_dtype=False)
    numbers = [c for c in expected.columns if c.endswith("_pct")]
    np.testing.assert_allclose(got[numbers].to_numpy(float), expected[numbers].to_numpy(float),
                               rtol=0, atol=1e-9)

    shorter = requests.post(f"{served}/invocations", timeout=120,
                            json=_payload(prices, forecast_days=2, asof=f"{prices.index[-5]:%Y-%m-%d}"))
    assert shorter.status_code == 200, shorter.text[:500]
    steps = pd.DataFrame(shorter.json()["predictions"])
    assert set(steps["step"]) == {1, 2} and steps["date"].min() == f"{prices.index[-4]:%Y-%m-%d}"


@on_the_tiny_chain
@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p.drop(columns=["KO"]), "The new prices lack KO, which the network was trained on"),
    (lambda p: p.iloc[-10:], "Only 10 trading day(s) of prices"),
    (lambda p: p.astype(object).mask(p == p.iloc[-2, 0], "twelve"),
     "the posted prices: column 'AAPL' holds 'twelve' on"),
], ids=["missing-asset", "too-few-days", "non-numeric"])
def test_a_bad_request_gets_400_with_the_cli_message(served, tracked, change, message):
    prices = pd.read_parquet(tracked[0] / "data" / "runs" / chain.RUN_ID / "prices.parquet")
    answer = requests.post(f"{served}/invocations", json=_payload(change(prices)), timeout=120)
    assert answer.status_code == 400, answer.text[:500]
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert message in answer.json()["message"]


@on_the_tiny_chain
def test_roicast_run_with_mlflow_logs_the_run_it_finished(tiny_here, monkeypatch, capsys):
    mlflow = pytest.importorskip("mlflow")
    from roicast.runs import runner

    monkeypatch.setattr(runner, "run_chain",
                        lambda params, **kw: runner.RunResult(params.run_id, "succeeded"))
    uri = f"sqlite:///{tiny_here / 'cli.db'}"
    assert main(["run", "--run-id", chain.RUN_ID, "--only", "05", "--mlflow", uri]) == 0
    assert f"in {uri}" in capsys.readouterr().out
    (run,) = mlflow.MlflowClient(uri).search_runs([mlflow.MlflowClient(uri).get_experiment_by_name(
        "roicast").experiment_id])
    _assert_logged_as_recorded(mlflow.MlflowClient(uri), run.info.run_id, paths.run_dir(chain.RUN_ID))


@on_the_tiny_chain
def test_a_sweep_is_a_parent_run_with_one_child_per_run_and_the_chosen_one_tagged(tiny_here):
    mlflow = pytest.importorskip("mlflow")
    from roicast.runs import tracking

    grid = {"seed": [7, 8]}
    sid = sweep.sweep_id(grid)
    run_ids = [f"{sid}-000", f"{sid}-001"]
    shutil.copytree(paths.run_dir(chain.RUN_ID), paths.run_dir(run_ids[0]))
    paths.run_dir(chain.RUN_ID).rename(paths.run_dir(run_ids[1]))
    index = sweep.write_sweep_report(sid, grid, [{"seed": 7}, {"seed": 8}], run_ids)
    uri = f"sqlite:///{tiny_here / 'sweep.db'}"
    parent = tracking.log_sweep(index.parent / "sweep.json", uri)
    client = mlflow.MlflowClient(uri)
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(child.data.tags["roicast.run_id"] for child in children) == run_ids
    chosen = json.loads((index.parent / "sweep.json").read_text())["chosen"]["run_id"]
    assert chosen in run_ids and client.get_run(parent).data.tags["roicast.chosen_run_id"] == chosen
    for child in children:
        is_chosen = child.data.tags["roicast.run_id"] == chosen
        assert child.data.tags["roicast.chosen"] == str(is_chosen).lower()
        assert bool(child.outputs.model_outputs) == is_chosen


def test_a_tracking_server_that_does_not_answer_stops_the_run_before_it_starts(capsys):
    pytest.importorskip("mlflow")
    uri = f"http://127.0.0.1:{_free_port()}"
    assert main(["run", "--run-id", "anything", "--mlflow", uri]) == 2
    assert f"roicast: error: No MLflow tracking server answers at {uri}" in capsys.readouterr().err


def test_without_the_extra_mlflow_says_how_to_install_it_and_nothing_else_imports_it(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "mlflow" else real(name, *rest))
    assert main(["run", "--run-id", "anything", "--mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install -e ".[mlflow]"' in err
    loaded = subprocess.run([sys.executable, "-c", "import sys, roicast.cli, roicast.runs.runner, "
                             "roicast.runs.sweep, roicast.runs.tracking; print('mlflow' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"
