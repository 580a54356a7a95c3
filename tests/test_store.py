"""The run store: ids that stay inside data/runs/, runs as records, lineage, locks, a sturdy index."""

import errno
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import papermill
import pytest

from roicast import cli, paths
from roicast.cli import main
from roicast.config import validate_params
from roicast.data import yahoo
from roicast.errors import ContractError, MissingArtefactError, ParameterError, RunInUseError, storage_error
from roicast.runs import artefacts, reports, runner, store
from roicast.runs.runner import resolve_params


@pytest.fixture(autouse=True)
def no_kernels(monkeypatch):
    """These tests never start a notebook; one that tries would take minutes, so it fails."""

    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was started")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)


BAD_IDS = ["../../x", "bad id/..", "/abs/path", "index.html", "x" * 300, "javascript:alert(1)",
           "sweeps", ".hidden", ""]


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_a_bad_run_id_is_refused_before_anything_is_written(run_id, capsys, workdir):
    code = main(["run", "--run-id", run_id])
    err = capsys.readouterr().err
    assert code == 2
    assert "Invalid run id" in err and "letters, digits" in err  # the whole message, not its first line
    assert not paths.runs_dir().exists() and not paths.reports_dir().exists()


@pytest.mark.parametrize("run_id", ["../x", "a/b", "index.html"])
def test_every_path_of_a_run_checks_its_id(run_id):
    for folder in (paths.run_dir, paths.report_dir):
        with pytest.raises(ParameterError, match="Invalid run id"):
            folder(run_id)


def test_run_id_comes_from_the_parameters_too(tmp_path):
    assert resolve_params({"run_id": "myid"}, None, None).run_id == "myid"
    assert resolve_params({}, "cli-id", None).run_id == "cli-id"
    assert resolve_params({}, None, None).run_id.endswith("-sample")
    with pytest.raises(ParameterError, match="disagree"):
        resolve_params({"run_id": "a"}, "b", None)
    with pytest.raises(ParameterError, match="Invalid run id|run_id"):
        resolve_params({"run_id": "../escape"}, None, None)


def _fake_notebook(fail_in: str | None = None, calls: list | None = None):
    """papermill.execute_notebook standing in for the kernels: writes the executed copy only."""

    def execute(source, output, parameters=None, **kwargs):
        name = os.path.basename(source).removesuffix(".ipynb")
        if calls is not None:
            calls.append(name)
        if name == fail_in:
            raise RuntimeError("Kernel died before replying to kernel_info")

    return execute


def test_a_full_run_on_an_existing_id_is_refused_unless_overwrite(monkeypatch, capsys):
    earlier = paths.run_dir("kept")
    earlier.mkdir(parents=True)
    artefacts.write_json(earlier / "params.json", {"seq_len": 60})
    artefacts.write_json(earlier / "evaluation.json", {"metrics": {"scaled": {"hybrid": {"r2": 0.75}}}})
    monkeypatch.setattr(papermill, "execute_notebook", _fake_notebook(fail_in="01_collect"))

    code = main(["run", "--run-id", "kept", "-p", "seq_len", "30"])
    err = capsys.readouterr().err
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert json.loads((earlier / "params.json").read_text()) == {"seq_len": 60}

    code = main(["run", "--run-id", "kept", "-p", "seq_len", "30", "--overwrite"])
    assert code == 2  # the fake 01 fails, but the old run is gone, not mixed with the new one
    assert json.loads((earlier / "params.json").read_text())["seq_len"] == 30
    assert not (earlier / "evaluation.json").exists()
    assert json.loads((earlier / "metrics.json").read_text())["status"] == "failed"


def test_a_second_process_on_the_same_run_stops_at_once(monkeypatch, capsys):
    code = ("import sys, time; from roicast.runs import store; lock = store.acquire('busy'); "
            "print('held', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        calls: list = []
        monkeypatch.setattr(papermill, "execute_notebook", _fake_notebook(calls=calls))
        start = time.perf_counter()
        assert main(["run", "--run-id", "busy"]) == 2
        assert time.perf_counter() - start < 5
        err = capsys.readouterr().err
        assert "being written by process" in err and calls == []
        with pytest.raises(RunInUseError):
            store.open_step("busy", "01_collect")  # a notebook in JupyterLab is refused too
    finally:
        holder.kill()
        holder.wait()
    assert not store.is_locked("busy")  # a dead process holds nothing


def _fake_chain(run_id: str, seq_len: int = 60, upto: str = "06_forecast") -> None:
    """The artefacts of every step (tiny stand-ins), each step opened and finished in order."""
    params = validate_params({"run_id": run_id, "seq_len": seq_len})
    for spec in store.STEPS:
        step = store.open_step(run_id, spec.name)
        for name in spec.writes:
            target = step.dir / name
            if name in ("logs", "ensemble", "forecasts"):
                target.mkdir(exist_ok=True)
            else:
                target.write_text(json.dumps({"made_by": spec.name, "seq_len": seq_len}))
        step.finish(params)
        if spec.name == upto:
            break


def test_re_running_a_step_with_other_parameters_removes_what_was_made_from_it():
    _fake_chain("lab")
    run = paths.run_dir("lab")
    assert store.complete_steps(run) == list(paths.NOTEBOOKS)
    (run / "dataset.npz").write_text("scaled another way")  # 02 re-run with scaler=standard …
    store.open_step("lab", "02_preprocess").finish(validate_params({"run_id": "lab", "scaler": "standard"}))
    for gone in ("model.keras", "train.json", "predictions.parquet", "evaluation.json", "ensemble",
                 "forecasts", "forecast.json"):
        assert not (run / gone).exists(), gone
    assert set(store.read_lineage(run)) == {"01_collect", "02_preprocess"}
    with pytest.raises(MissingArtefactError, match="model.keras.*03_train"):
        store.open_step("lab", "04_evaluate")  # … then 04 without 03 stops, naming what to run
    metrics = json.loads((run / "metrics.json").read_text())
    assert "metrics" not in metrics  # no R² of a network trained on other data


def test_re_running_a_step_with_the_same_parameters_keeps_what_came_after():
    _fake_chain("same")
    store.open_step("same", "02_preprocess").finish(validate_params({"run_id": "same"}))
    assert store.complete_steps(paths.run_dir("same")) == list(paths.NOTEBOOKS)


def test_a_half_written_or_changed_input_stops_the_next_notebook():
    _fake_chain("half", upto="02_preprocess")
    (paths.run_dir("half") / "dataset.npz").write_text("02 died while writing")
    with pytest.raises(MissingArtefactError, match="not the one 02_preprocess recorded"):
        store.open_step("half", "03_train")


def test_ensemble_checks_its_inputs_before_training_and_does_not_need_evaluate():
    _fake_chain("no04", upto="03_train")
    assert store.open_step("no04", "05_ensemble").name == "05_ensemble"
    _fake_chain("no03", upto="02_preprocess")
    with pytest.raises(MissingArtefactError, match="03_train"):
        store.open_step("no03", "05_ensemble")


def test_a_run_whose_process_died_shows_as_interrupted_and_resumes_after_its_last_step():
    _fake_chain("killed", upto="02_preprocess")
    artefacts.write_json(paths.run_dir("killed") / store.RUN_RECORD, {"status": "running"})
    assert store.run_status("killed") == "interrupted"
    from roicast.runs.runner import resume_notebooks

    assert resume_notebooks("killed") == ["03_train", "04_evaluate", "05_ensemble", "06_forecast"]


def test_an_interrupted_re_run_of_a_finished_run_does_not_relabel_its_results():
    _fake_chain("done")
    artefacts.write_json(paths.run_dir("done") / store.RUN_RECORD, {"status": "interrupted"})
    assert store.run_status("done") == "succeeded"


def test_a_step_scratch_folder_is_cleared_on_the_next_start_and_removed_on_finish():
    _fake_chain("scratch", upto="02_preprocess")
    step = store.open_step("scratch", "03_train")
    (step.fresh_scratch() / "history.partial.csv").write_text("epoch\n0\n")  # then the process is killed
    step = store.open_step("scratch", "03_train")
    assert list(step.fresh_scratch().iterdir()) == []


def _fake_step(run_id: str, step: str, content: str = "") -> None:
    """`step` run (again) with the default parameters, writing `content` into its files."""
    opened = store.open_step(run_id, step)
    for name in store.SPECS[step].writes:
        target = opened.path(name)
        if name in (store.LOGS, store.ENSEMBLE, store.FORECASTS):
            target.mkdir(exist_ok=True)
        else:
            target.write_text(json.dumps({"made_by": step, "content": content}))
    opened.finish(validate_params({"run_id": run_id}))


def test_re_running_the_ensemble_removes_the_forecasts_made_from_the_old_one():
    _fake_chain("ens")
    run = paths.run_dir("ens")
    _fake_step("ens", "05_ensemble", "members retrained")  # same parameters, same version, new files
    assert not (run / store.FORECASTS).exists() and not (run / store.FORECAST_INFO).exists()
    assert store.complete_steps(run) == list(paths.NOTEBOOKS[:5])
    assert "06_forecast" not in store.read_lineage(run)
    _fake_step("ens", "06_forecast")
    assert store.complete_steps(run) == list(paths.NOTEBOOKS)


def test_a_forecast_made_before_the_ensemble_goes_when_the_ensemble_is_made():
    _fake_chain("late", upto="04_evaluate")
    run = paths.run_dir("late")
    _fake_step("late", "06_forecast")  # 06 needs no ensemble …
    assert store.read_lineage(run)["06_forecast"]["inputs"].keys() == {"02_preprocess", "03_train"}
    _fake_step("late", "05_ensemble")  # … but its forecast did not have this one
    assert not (run / store.FORECASTS).exists()
    _fake_step("late", "06_forecast")
    assert "05_ensemble" in store.read_lineage(run)["06_forecast"]["inputs"]


def test_a_step_opens_only_the_artefacts_it_declares():
    _fake_chain("contract", upto="05_ensemble")
    step = store.open_step("contract", "06_forecast")
    assert step.path(store.ENSEMBLE_INFO) == step.dir / "ensemble.json"  # declared as may_read
    assert step.path(store.PARAMS).name == "params.json"  # the run's record
    with pytest.raises(ContractError, match="04_evaluate does not declare ensemble.json"):
        store.open_step("contract", "04_evaluate").path(store.ENSEMBLE_INFO)


def test_file_names_live_in_the_contract_alone():
    names = {name for spec in store.STEPS for name in (*spec.writes, *spec.run_files) if "." in name}
    names |= {store.LINEAGE, store.RUN_RECORD, store.METRICS}
    quoted = re.compile(rf"""(["'])({"|".join(map(re.escape, sorted(names)))})\1""")
    sources = {path.name: path.read_text() for path in Path(store.__file__).parent.rglob("*.py")
               if path.name != "store.py"}
    for nb in paths.NOTEBOOKS:
        cells = json.loads(paths.notebook_path(nb).read_text())["cells"]
        sources[nb] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    found = [f"{where}: {hit.group()}" for where, text in sources.items() for hit in quoted.finditer(text)]
    assert found == [], "name them through roicast.runs.store's constants:\n" + "\n".join(found)


def test_the_index_lists_an_unreadable_run_and_skips_it(workdir):
    _fake_chain("good")
    reports.publish("good")
    bad = paths.reports_dir() / "broken"
    bad.mkdir()
    (bad / "metrics.json").write_text("{not json")
    hostile = paths.reports_dir() / "javascript:alert(1)"
    hostile.mkdir()
    (hostile / "metrics.json").write_text("{}")
    page = reports.write_reports_index().read_text()
    assert "good/index.html" in page and "unreadable" in page
    assert "javascript:" not in page


def test_artefacts_and_report_copies_are_readable_by_others():
    old = os.umask(0o022)
    try:
        path = artefacts.write_json(paths.run_dir("perm") / "x.json", {"a": 1})
        copy = artefacts.copy_file(path, paths.report_dir("perm") / "x.json")
    finally:
        os.umask(old)
    for file in (path, copy):
        assert stat.S_IMODE(file.stat().st_mode) == 0o644


def _yahoo_frame(ticker: str, dates: pd.DatetimeIndex) -> pd.DataFrame:
    columns = pd.MultiIndex.from_product([["Close", "Open"], [ticker]], names=["Price", "Ticker"])
    return pd.DataFrame(100.0, index=dates, columns=columns)


def test_concurrent_fetches_keep_every_ticker_in_the_cache_manifest(monkeypatch, workdir):
    dates = pd.bdate_range("2024-01-01", "2024-03-01")

    def slow_download(ticker, **kwargs):
        time.sleep(0.2)
        return _yahoo_frame(ticker, dates)

    monkeypatch.setattr(yahoo.yf, "download", slow_download)
    threads = [threading.Thread(target=yahoo.fetch_prices, args=([t], "2024-01-01", "2024-03-01"))
               for t in ("AAA", "BBB", "CCC")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    manifest = json.loads((paths.cache_dir("yahoo") / yahoo.MANIFEST).read_text())
    assert set(manifest) == {"AAA", "BBB", "CCC"}


def test_a_corrupt_cache_entry_is_discarded_and_fetched_again(monkeypatch, workdir):
    dates = pd.bdate_range("2024-01-01", "2024-03-01")
    calls = []
    monkeypatch.setattr(yahoo.yf, "download",
                        lambda ticker, **kw: calls.append(ticker) or _yahoo_frame(ticker, dates))
    yahoo.fetch_prices(["AAA"], "2024-01-01", "2024-03-01")
    cache = paths.cache_dir("yahoo")
    yahoo.cache_file(cache, "AAA").write_bytes(b"not parquet")
    (cache / yahoo.MANIFEST).write_text("{broken")
    with pytest.warns(UserWarning, match="unreadable"):
        prices, _ = yahoo.fetch_prices(["AAA"], "2024-01-01", "2024-03-01")
    assert len(calls) == 2 and len(prices) == len(dates)
    assert "AAA" in json.loads((cache / yahoo.MANIFEST).read_text())


def test_the_artefact_table_covers_the_chain_in_order():
    assert [spec.name for spec in store.STEPS] == list(paths.NOTEBOOKS)
    for spec in store.STEPS:
        assert all(store.PRODUCER[name] < spec.name for name in spec.reads)  # data flows one way
        assert store.declared_parameters(spec.name)[0] == "run_id"


def _no_notebooks(monkeypatch, execute=None):
    """The runner's notebooks replaced by `execute` (default: refuse to start one)."""

    def refuse(nb, *args, **kwargs):
        raise AssertionError(f"{nb} was started")

    monkeypatch.setattr(runner, "_execute", execute or refuse)
    monkeypatch.setattr(cli, "_print_forecast", lambda run_id: None)


def _fake_forecast(seen: list):
    """06_forecast as far as the run store sees it: the parameters it gets and what it writes."""

    def execute(nb, params, *args, **kwargs):
        own = {name: getattr(params, name) for name in store.own_parameters(nb)}
        seen.append(own)
        step = store.open_step(params.run_id, nb)
        info = {"asof": own["asof"] or "2022-12-28", "params": own}
        artefacts.write_json(step.dir / "forecast.json", {"forecast": info})
        step.finish(params)

    return execute


def _trained_run(run_id: str) -> None:
    """A fake run with the runner's params.json."""
    _fake_chain(run_id)
    params = validate_params({"run_id": run_id})
    artefacts.write_json(paths.run_dir(run_id) / "params.json", params.model_dump())


def _record(run_id: str) -> dict[str, bytes]:
    run = paths.run_dir(run_id)
    return {name: (run / name).read_bytes() for name in ("params.json", store.LINEAGE)}


def test_a_forecast_with_other_prices_leaves_the_run_record_as_it_was(monkeypatch, tmp_path):
    _trained_run("rec")
    run = paths.run_dir("rec")
    before, seen = _record("rec"), []
    _no_notebooks(monkeypatch, _fake_forecast(seen))
    new = tmp_path / "new.csv"
    assert main(["forecast", "--run-id", "rec", "-p", "source", "csv", "-p", "csv_path", str(new),
                 "--asof", "2022-12-20", "-p", "seq_len", "60"]) == 0  # seq_len repeats the run's
    assert _record("rec") == before
    assert seen[-1] == {"asof": "2022-12-20", "forecast_days": 5, "max_staleness_days": 5,
                        "forecast_source": "csv", "forecast_csv_path": str(new), "refit": False}
    own = json.loads((run / "forecasts" / "lineage.json").read_text())["06_forecast"]["params"]
    assert own == {"run_id": "rec", **seen[-1]}  # the forecast's own record, beside its outputs
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["params"]["source"] == "sample" and metrics["params"]["forecast_csv_path"] is None
    assert metrics["forecast"]["params"] == seen[-1]

    assert main(["forecast", "--run-id", "rec"]) == 0  # the run's own prices, the newest day
    assert seen[-1]["asof"] is None and seen[-1]["forecast_source"] is None
    assert seen[-1]["forecast_csv_path"] is None
    assert _record("rec") == before
    assert store.complete_steps(run) == list(paths.NOTEBOOKS) and store.run_status("rec") == "succeeded"


@pytest.mark.parametrize("flags, message", [
    (["-p", "seq_len", "30"], "seq_len belongs to the training of run 'rec', which a forecast never changes"),
    (["-p", "csv_path", "new.csv"], "forecast_csv_path is read only when the forecast's prices come from "
                                    "a CSV, not from 'sample'"),
    (["-p", "source", "csv", "-p", "forecast_source", "yahoo"], "source and forecast_source disagree"),
])
def test_a_forecast_refuses_what_it_cannot_honour(flags, message, monkeypatch, capsys):
    _trained_run("rec")
    before = _record("rec")
    _no_notebooks(monkeypatch)
    for argv in (["forecast", "--run-id", "rec", *flags], ["run", "--only", "06", "--run-id", "rec", *flags]):
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert _record("rec") == before


def _earlier_run() -> dict:
    _fake_chain("earlier")
    return {path: path.read_bytes() for path in paths.run_dir("earlier").rglob("*") if path.is_file()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("roicast: error: ") and err.count("\n") == 1, err
    return err


def _executed(nb, params, report_dir, *args, **kwargs):
    (report_dir / f"{nb}.ipynb").write_text("{}")


def test_a_full_disk_while_rendering_fails_the_run_in_one_line(monkeypatch, capsys):
    earlier = _earlier_run()
    html = paths.report_dir("full") / "01_collect.html"

    def full_disk(executed, with_code=False):
        raise OSError(errno.ENOSPC, "No space left on device", str(html))

    _no_notebooks(monkeypatch, _executed)
    monkeypatch.setattr(reports, "render_notebook", full_disk)
    assert main(["run", "--run-id", "full"]) == 2
    err = _one_line_error(capsys)
    assert f"run full failed: {html}: No space left on device; free space there" in err
    assert store.run_status("full") == "failed"
    assert {path: path.read_bytes() for path in earlier} == earlier


def test_a_write_that_finds_the_disk_full_names_its_file_and_leaves_no_temporary_file(monkeypatch, capsys):
    earlier = _earlier_run()
    write_text = Path.write_text

    def full_for_params(self, *args, **kwargs):
        if self.name.startswith(".params.json."):
            raise OSError(errno.ENOSPC, "No space left on device")  # write() names no file
        return write_text(self, *args, **kwargs)

    _no_notebooks(monkeypatch)
    monkeypatch.setattr(Path, "write_text", full_for_params)
    assert main(["run", "--run-id", "full"]) == 2
    err = _one_line_error(capsys)
    assert f"{paths.run_dir('full') / 'params.json'}: No space left on device" in err
    assert not list(paths.workdir().rglob("*.tmp*"))
    assert store.run_status("full") == "failed"
    assert {path: path.read_bytes() for path in earlier} == earlier


@pytest.mark.parametrize("code, cause", [(errno.EACCES, "Permission denied"),
                                         (errno.EROFS, "Read-only file system")])
def test_a_reports_folder_that_refuses_writes_fails_the_run_in_one_line(code, cause, monkeypatch, capsys):
    earlier = _earlier_run()
    mkstemp = tempfile.mkstemp

    def refuse_reports(*args, dir=None, **kwargs):
        if Path(dir).is_relative_to(paths.reports_dir()):
            raise OSError(code, cause, str(dir))
        return mkstemp(*args, dir=dir, **kwargs)

    _no_notebooks(monkeypatch)
    monkeypatch.setattr(tempfile, "mkstemp", refuse_reports)
    assert main(["run", "--run-id", "refused"]) == 2
    err = _one_line_error(capsys)
    assert f"{paths.report_dir('refused')}: {cause}; " in err and "ROICAST_WORKDIR" in err
    assert store.run_status("refused") == "failed"
    assert {path: path.read_bytes() for path in earlier} == earlier


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_runs_folder_stops_in_one_line(monkeypatch, capsys):
    _no_notebooks(monkeypatch)
    paths.runs_dir().mkdir(parents=True)
    paths.runs_dir().chmod(0o555)
    try:
        assert main(["run", "--run-id", "ro"]) == 2
    finally:
        paths.runs_dir().chmod(0o755)
    assert "Permission denied; make it writable" in _one_line_error(capsys)


def test_an_os_error_that_is_no_disk_problem_is_a_bug_with_its_traceback():
    assert storage_error(OSError(errno.EBADF, "Bad file descriptor")) is None
    assert storage_error(MissingArtefactError("model.keras does not exist.")) is None
