"""Run the notebook chain with papermill: validate once, run in order, report, stop on error.

Each notebook receives only the parameters its `parameters` cell declares. A run's
validated parameters are kept in `params.json`, so `--only` can re-run later steps of
the same run with the same settings.
"""

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import papermill
from jupyter_client.manager import AsyncKernelManager
from papermill.exceptions import PapermillExecutionError

from roicast import paths, reports
from roicast.artefacts import read_json, write_json
from roicast.config import RunParams, validate_params
from roicast.errors import MissingArtefactError, NotebookError, ParameterError

NEEDS = {
    "01_collect": (),
    "02_preprocess": ("prices.parquet",),
    "03_train": ("dataset.npz",),
    "04_evaluate": ("dataset.npz", "scaler.json", "model.keras"),
    "05_ensemble": ("dataset.npz", "scaler.json", "metrics.json"),
}
WRITER = {
    "prices.parquet": "01_collect", "dataset.npz": "02_preprocess", "scaler.json": "02_preprocess",
    "model.keras": "03_train", "metrics.json": "04_evaluate",
}


def kernel_manager_logging_to(log_path: Path) -> type[AsyncKernelManager]:
    """A kernel manager whose kernel writes its stderr (TensorFlow's start-up chatter) to a file.

    With the kernel's fd capture off, C++ log lines land there too instead of in the
    notebook; the terminal shows only the runner's progress lines.
    """

    class LoggingKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            with open(log_path, "ab") as stderr:
                await super()._async_launch_kernel(kernel_cmd, **{**kw, "stderr": stderr})

    return LoggingKernelManager


@dataclass
class RunResult:
    run_id: str
    status: str
    timings_s: dict[str, float] = field(default_factory=dict)
    report_index: Path | None = None
    error: str | None = None


def new_run_id(source: str) -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{source}"


def latest_run_id() -> str:
    runs = sorted((p for p in paths.runs_dir().glob("*") if (p / "params.json").exists()),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        raise MissingArtefactError(f"No run found in {paths.runs_dir()}; run the whole chain first.")
    return runs[-1].name


def select_notebooks(only: Sequence[str] | None) -> list[str]:
    """Notebook names in chain order; `only` accepts '03', '03_train' or 'train'."""
    if not only:
        return list(paths.NOTEBOOKS)
    chosen = []
    for wanted in only:
        match = [nb for nb in paths.NOTEBOOKS if wanted in (nb, nb[:2], nb[3:], nb[1])]
        if not match:
            raise ParameterError(f"--only {wanted!r} names no notebook; choose from "
                                 f"{', '.join(paths.NOTEBOOKS)}.")
        chosen += match
    return [nb for nb in paths.NOTEBOOKS if nb in chosen]


def check_inputs(notebooks: list[str], run_dir: Path) -> None:
    """Fail before starting if a notebook's inputs exist neither on disk nor upstream in this run."""
    produced: set[str] = set()
    for nb in notebooks:
        missing = [name for name in NEEDS[nb] if name not in produced and not (run_dir / name).exists()]
        if missing:
            files = ", ".join(f"{name} (written by {WRITER[name]})" for name in missing)
            first = min(WRITER[name] for name in missing)
            raise MissingArtefactError(
                f"{nb} needs {files} in {run_dir}. Run {first} and the notebooks after it for "
                f"this run first, or run the chain without --only.")
        produced.update(name for name, writer in WRITER.items() if writer == nb)


def declared_parameters(notebook: str) -> list[str]:
    return list(papermill.inspect_notebook(str(paths.notebook_path(notebook))))


def resolve_params(values: dict, run_id: str | None, only: Sequence[str] | None) -> RunParams:
    """Validate parameters; with --only, start from the run's saved parameters."""
    select_notebooks(only)
    if only:
        run_id = run_id or latest_run_id()
        saved = paths.run_dir(run_id) / "params.json"
        base = read_json(saved) if saved.exists() else {}
        return validate_params({**base, **values, "run_id": run_id})
    params = validate_params(values)
    return params.model_copy(update={"run_id": run_id or new_run_id(params.source)})


def _failure_message(notebook: str, exc: PapermillExecutionError) -> str:
    first_line = (exc.evalue or "").strip().splitlines()[0] if exc.evalue else ""
    return f"{notebook} failed in cell {exc.exec_count or exc.cell_index}: {exc.ename}: {first_line}"


def run_chain(params: RunParams, only: Sequence[str] | None = None, with_code: bool = False,
              log: Callable[[str], None] = print) -> RunResult:
    """Execute the notebooks for one validated run; return its status and timings.

    On failure the chain stops, the failed notebook is still rendered, both index pages
    mark the run failed, and `NotebookError` carries a one-line message.
    """
    notebooks = select_notebooks(only)
    run_dir, report_dir = paths.run_dir(params.run_id), paths.report_dir(params.run_id)
    check_inputs(notebooks, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "params.json", params.model_dump())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    values = params.model_dump()
    result = RunResult(params.run_id, "running")
    if only and (run_dir / "metrics.json").exists():
        earlier = read_json(run_dir / "metrics.json").get("timings_s") or {}
        result.timings_s.update({nb: s for nb, s in earlier.items() if nb not in notebooks})
    reports.record_status(params, result.status, result.timings_s)
    log(f"run {params.run_id}: {', '.join(notebooks)}")
    for nb in notebooks:
        executed = report_dir / f"{nb}.ipynb"
        wanted = {k: values[k] for k in declared_parameters(nb)}
        (report_dir / f"{nb}.kernel.log").unlink(missing_ok=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(str(paths.notebook_path(nb)), str(executed), parameters=wanted,
                                       kernel_name="python3", progress_bar=False,
                                       cwd=str(paths.NOTEBOOKS_DIR),
                                       kernel_manager_class=kernel_manager_logging_to(
                                           report_dir / f"{nb}.kernel.log"),
                                       extra_arguments=["--IPKernelApp.capture_fd_output=False"])
        except PapermillExecutionError as exc:
            result.status, result.error = "failed", _failure_message(nb, exc)
        except KeyboardInterrupt:
            reports.record_status(params, "failed", result.timings_s, error=f"{nb} interrupted")
            raise
        except Exception as exc:  # the kernel died or could not start: still a failed run
            result.status, result.error = "failed", f"{nb} failed: {type(exc).__name__}: {exc}"
        result.timings_s[nb] = round(time.perf_counter() - start, 2)
        if executed.exists():
            reports.render_notebook(executed, with_code)
        log(f"  {nb:<14} {result.timings_s[nb]:7.1f} s  {'FAILED' if result.error else 'ok'}")
        if result.error:
            break
    if result.status == "running":
        result.status = "succeeded"
    result.report_index = reports.record_status(params, result.status, result.timings_s,
                                                error=result.error)
    if result.error:
        html = report_dir / f"{nb}.html"
        where = f"Full traceback: {html}" if html.exists() else f"Kernel log: {report_dir / nb}.kernel.log"
        raise NotebookError(f"{result.error}\n{where}")
    return result

