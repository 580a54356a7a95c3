"""Run the notebook chain with papermill: validate once, run in order, report, stop on error.

Each notebook receives only the parameters its `parameters` cell declares. A run's
validated parameters are kept in `params.json`, so `--only` and `--resume` can re-run
later steps of the same run with the same settings. The runner holds the run's lock for
the whole chain; a full run never lands on an existing run unless `overwrite` removes it
first; an interrupted run says so and can be resumed.
"""

import asyncio
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_event_loop, run_sync
from papermill.exceptions import PapermillExecutionError

from roicast import paths
from roicast.checkout import require_checkout
from roicast.compute import members_ahead, preloaded
from roicast.compute.cluster import SCHEDULER_ENV
from roicast.config import RunParams, require_backend, validate_params
from roicast.errors import (
    MissingArtefactError,
    NotebookError,
    ParameterError,
    RoicastError,
    RunExistsError,
    RunInterrupted,
    StorageError,
    storage_error,
)
from roicast.runs import reports, store
from roicast.runs.artefacts import read_json, write_json
from roicast.runs.forked_kernels import ForkedProvisioner


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


SOCKET_PREFIX_MAX = 100  # a Unix socket's path holds 107 bytes; the kernel appends "-<port>"


def kernel_sockets() -> dict[str, str]:
    """Where a kernel listens: Unix sockets in a private folder of its own where the system has
    them, else TCP on localhost (Windows, or a temporary folder whose path is too long).

    Over TCP, jupyter_client picks free ports and frees them before the kernel binds them, so a
    port that a dask cluster or another kernel takes meanwhile kills the kernel at start; two
    sweeps, or pytest's workers, start many of each at once.
    """
    if os.name == "nt":
        return {}
    folder = tempfile.mkdtemp(prefix="roicast-kernel-")
    prefix = os.path.join(folder, "kernel")
    if len(prefix) > SOCKET_PREFIX_MAX:
        os.rmdir(folder)
        return {}
    return {"transport": "ipc", "ip": prefix}


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
    runs = sorted((p for p in paths.runs_dir().glob("*") if (p / store.PARAMS).exists()),
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


def resume_notebooks(run_id: str) -> list[str]:
    """The notebooks after the last one that finished (and is still current) in this run."""
    done = store.complete_steps(paths.run_dir(run_id))
    todo = [nb for nb in paths.NOTEBOOKS if nb not in done]
    if not todo:
        raise ParameterError(f"Run '{run_id}' is complete; nothing to resume. Use --only to "
                             "re-run a notebook.")
    return list(paths.NOTEBOOKS[paths.NOTEBOOKS.index(todo[0]):])


def check_plan(notebooks: list[str], run_dir: Path) -> None:
    """Fail before starting if a notebook's inputs are neither current on disk nor made earlier
    in this plan."""
    planned: set[str] = set()
    for nb in notebooks:
        for name in store.SPECS[nb].reads:
            if store.PRODUCER[name] not in planned:
                try:
                    store.check_input(run_dir, nb, name)
                except MissingArtefactError as exc:
                    raise MissingArtefactError(f"{exc} Or run the chain without --only.") from None
        planned.add(nb)


def resolve_params(values: dict, run_id: str | None, only: Sequence[str] | None,
                   resume: bool = False) -> RunParams:
    """Validate parameters and the run id, from `--run-id` or a `run_id` parameter.

    With --only or --resume, start from the run's saved parameters; --only on a run id that
    does not exist yet starts that run with the notebooks named (01 and 02, say, to look at the
    data before training), which --resume then completes.
    """
    require_checkout()
    select_notebooks(only)
    chosen = values.get("run_id")
    if run_id is not None and chosen is not None and chosen != run_id:
        raise ParameterError(f"--run-id {run_id!r} and the parameter run_id={chosen!r} disagree; "
                             "give one of them.")
    run_id = run_id if run_id is not None else chosen
    if only or resume:
        run_id = paths.check_run_id(run_id or latest_run_id())
        if not paths.run_dir(run_id).is_dir():
            if only and not resume:  # a new run's first steps; the plan is checked before they start
                return validate_params({**values, "run_id": run_id})
            known = sorted(p.name for p in paths.runs_dir().glob("*") if (p / store.PARAMS).exists())
            raise MissingArtefactError(f"No run '{run_id}' in {paths.runs_dir()}. Existing runs: "
                                       f"{', '.join(known) or 'none'}.")
        saved = paths.run_dir(run_id) / store.PARAMS
        base = read_json(saved) if saved.exists() else {}
        return validate_params({**base, **values, "run_id": run_id})
    if run_id is None:
        run_id = new_run_id(validate_params(values).source)
    return validate_params({**values, "run_id": run_id})


def _failure_message(notebook: str, exc: PapermillExecutionError) -> str:
    message = " ".join((exc.evalue or "").split())
    if len(message) > 2000:
        message = message[:2000] + " …"
    return f"{notebook} failed in cell {exc.exec_count or exc.cell_index}: {exc.ename}: {message}"


class _Progress:
    """What a notebook prints, passed on line by line as it comes (epochs of 03, members of 05)."""

    def __init__(self, notebook: str, log: Callable[[str], None]):
        self.prefix, self.log, self.pending = f"    {notebook[:2]} | ", log, ""

    def write(self, text: str) -> None:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.log(self.prefix + line.rstrip())

    def flush(self) -> None:
        pass


@contextmanager
def _library_logs_to(path: Path) -> Iterator[None]:
    """Send what papermill, nbclient, nbconvert and asyncio log to a file, not the terminal: on
    Ctrl-C they would print a dying kernel's traceback after roicast's one-line message."""
    handler = logging.FileHandler(path)
    loggers = [logging.getLogger(name) for name in ("asyncio", "papermill", "traitlets")]
    saved = [(logger, logger.handlers[:], logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers, logger.propagate = [handler], False
    try:
        yield
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
        handler.close()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def prepare_run_dir(params: RunParams, notebooks: list[str], overwrite: bool) -> Path:
    """The run folder, ready for these notebooks: a full run needs a new id or `overwrite`."""
    run_dir, report_dir = paths.run_dir(params.run_id), paths.report_dir(params.run_id)
    full = notebooks == list(paths.NOTEBOOKS)
    if full and run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunExistsError(
                f"Run '{params.run_id}' already exists ({store.run_status(params.run_id)}). Use "
                "--overwrite to replace it, --resume or --only to re-run some of its notebooks, "
                "or another --run-id.")
        shutil.rmtree(run_dir)
        shutil.rmtree(report_dir, ignore_errors=True)
    check_plan(notebooks, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]
FORKED = paths.NOTEBOOKS[2:]  # 03–06, whose import cells import Keras: forked with it loaded
KERNEL_START_TIMEOUT = 600  # s: a warm kernel answers once its imports are done, on a busy machine too


def import_cell(nb: str) -> str:
    """The notebook's first code cell: its imports, by the notebooks' own convention."""
    notebook = nbformat.read(paths.notebook_path(nb), as_version=4)
    return next(cell.source for cell in notebook.cells if cell.cell_type == "code")


def start_preloading(report_dir: Path) -> None:
    """The server that 03–06's kernels and the members' lanes fork from (`compute.preloaded`),
    with what their import cells import; what it prints goes to the run's reports."""
    preloaded.start(["ipykernel.kernelapp", "roicast.compute.members_ahead",
                     *(name for nb in FORKED for name in preloaded.imported_modules(import_cell(nb)))],
                    report_dir / "preloaded.log")


def kernel_manager(nb: str, log_path: Path, fork_any: bool = False) -> AsyncKernelManager:
    """The manager of `nb`'s kernel, to be forked from the preloaded server where it may be: 03–06's,
    and with `fork_any` 01's and 02's too."""
    manager = kernel_manager_logging_to(log_path)(kernel_name="python3", **kernel_sockets())
    if (nb in FORKED or fork_any) and preloaded.usable():
        manager.kernel_id = str(uuid.uuid4())
        manager.provisioner = ForkedProvisioner(kernel_id=manager.kernel_id, kernel_spec=manager.kernel_spec,
                                                parent=manager)
        manager.provisioner.log_path = log_path
    return manager


class WarmKernels:
    """Each notebook's kernel, started while the notebook before it runs.

    A kernel starts in about a second, but importing TensorFlow, Keras and the library takes
    it ten more (benchmarks/README.md); on two cores the notebook before it rarely keeps both
    busy. So the next notebook's kernel is started early and runs that notebook's import cell
    as it starts (IPython's `exec_lines`, outside the notebook's history); the notebook then
    runs every cell itself, its imports finding the modules loaded. The kernels of 03–06 are
    forked from a server that imported TensorFlow, Keras and roicast while 01 and 02 ran
    (`start_preloading`), so even their import cells find little left to do.

    01's and 02's kernels are forked too where the server was ready before the run began
    (`fork_any`: a run before it in this process, as in a notebook or a test calling `run_chain`
    again, started it): they then skip about 1.5 s of a core importing pandas, seaborn and the
    library. A server started by this run is still importing TensorFlow as 01 starts, so there
    they start on their own rather than wait for it.
    """

    def __init__(self, report_dir: Path, fork_any: bool = False):
        self.report_dir, self.fork_any, self.started = report_dir, fork_any, {}

    def start(self, nb: str) -> None:
        log_path = self.report_dir / f"{nb}.kernel.log"
        log_path.unlink(missing_ok=True)
        manager = kernel_manager(nb, log_path, self.fork_any)
        try:
            run_sync(manager.start_kernel)(cwd=str(paths.NOTEBOOKS_DIR), extra_arguments=[
                *KERNEL_ARGUMENTS, f"--IPKernelApp.exec_lines={import_cell(nb)}"])
        except BaseException:
            self.stop(manager)  # its sockets' folder too
            raise
        self.started[nb] = manager

    def take(self, nb: str) -> AsyncKernelManager:
        if nb not in self.started:
            self.start(nb)
        return self.started.pop(nb)

    @staticmethod
    def stop(manager: AsyncKernelManager) -> None:
        with suppress(RuntimeError):  # already gone
            run_sync(manager.shutdown_kernel)(now=True)
        process = getattr(manager.provisioner, "process", None)
        if process is not None and process.poll() is None:  # a shutdown an interrupt cut short
            process.kill()
            process.wait()
        if manager.transport == "ipc":  # its sockets' folder (`kernel_sockets`)
            shutil.rmtree(os.path.dirname(manager.ip), ignore_errors=True)

    def close(self) -> None:
        for manager in self.started.values():
            self.stop(manager)
        self.started.clear()


def end_pending_tasks() -> None:
    """Finish what an interrupted notebook left on the event loop.

    Ctrl-C stops papermill inside its loop; the cell's task stays pending and, once the loop
    runs again (nbclient shuts the kernel down at exit), ends with the kernel's error that no
    one reads, which asyncio then prints as "Task exception was never retrieved" with a
    traceback. Cancelled and awaited here, each task's outcome is read and nothing is printed.
    """
    loop = ensure_event_loop()
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _execute(nb: str, params: RunParams, report_dir: Path, log: Callable[[str], None],
             quiet: bool, kernel: AsyncKernelManager) -> None:
    values = params.model_dump()
    wanted = {k: values[k] for k in store.declared_parameters(nb)}
    papermill.execute_notebook(str(paths.notebook_path(nb)), str(report_dir / f"{nb}.ipynb"),
                               parameters=wanted, kernel_name="python3", progress_bar=False,
                               cwd=str(paths.NOTEBOOKS_DIR), km=kernel, start_timeout=KERNEL_START_TIMEOUT,
                               stdout_file=None if quiet else _Progress(nb, log))


def run_chain(params: RunParams, only: Sequence[str] | None = None, with_code: bool = False,
              log: Callable[[str], None] = print, overwrite: bool = False, resume: bool = False,
              quiet: bool = False, scheduler: str | None = None) -> RunResult:
    """Execute the notebooks for one validated run; return its status and timings.

    On failure the chain stops, the failed notebook is still rendered, both index pages
    mark the run failed, and `NotebookError` carries the notebook's error message. Ctrl-C
    or SIGTERM stop it as interrupted (`RunInterrupted`), keeping what had finished. A full disk
    or a folder it may not write fails it with one line naming the path (`StorageError`).
    """
    require_checkout()
    require_backend(params.backend)
    notebooks = resume_notebooks(params.run_id) if resume else select_notebooks(only)
    lock = store.acquire(params.run_id)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with _library_logs_to(paths.runs_dir() / ".locks" / f"{params.run_id}.log"):
            return _run_locked(params, notebooks, with_code, log, overwrite, quiet, scheduler)
    except OSError as exc:
        error = storage_error(exc)
        if error is None:
            raise
        failure = StorageError(f"run {params.run_id} failed: {error}")
        _mark_failed(params, notebooks, str(failure))
        raise failure from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        lock.release()


def _mark_failed(params: RunParams, notebooks: list[str], error: str) -> None:
    """Record the run as failed where the disk still lets us (a full one may refuse even that)."""
    with suppress(OSError):
        reports.record_status(params, notebooks, "failed",
                              store.read_record(params.run_id).get("timings_s", {}), error=error)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


JAX_CACHE = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")


def jax_cache() -> dict[str, str]:
    """JAX's persistent compilation cache, in the work folder: each notebook's kernel would compile
    the network's steps again (a small network's first fit and predict took 3.0 s compiling, 0.7 s
    from the cache), so 04–06 load what 03 compiled. A user's own setting wins."""
    return dict(zip(JAX_CACHE, (str(paths.cache_dir("jax")), "0"), strict=True))


def _run_locked(params: RunParams, notebooks: list[str], with_code: bool, log: Callable[[str], None],
                overwrite: bool, quiet: bool, scheduler: str | None) -> RunResult:
    run_dir = prepare_run_dir(params, notebooks, overwrite)
    report_dir = paths.report_dir(params.run_id)
    if store.changes_record(notebooks):  # a forecast's own parameters go to its own record
        write_json(run_dir / store.PARAMS, params.model_dump())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ[store.LOCKED_RUN_ENV] = params.run_id
    before = {name: os.environ.get(name) for name in ("KERAS_BACKEND", SCHEDULER_ENV, *JAX_CACHE)}
    os.environ["KERAS_BACKEND"] = params.backend  # the kernels (and their workers) inherit it
    if params.backend == "jax":
        for name, value in jax_cache().items():
            os.environ.setdefault(name, value)
    if scheduler:
        os.environ[SCHEDULER_ENV] = scheduler  # 05's kernel sends its members there
    ready = preloaded.usable()  # started by a run before this one: done importing by now
    if set(FORKED) & set(notebooks):
        start_preloading(report_dir)  # it imports while 01 and 02 run
    result = RunResult(params.run_id, "running")
    result.timings_s = dict(store.read_record(params.run_id).get("timings_s", {}))  # each replaced as it runs
    reports.record_status(params, notebooks, "running", result.timings_s)
    log(f"run {params.run_id}: {', '.join(notebooks)}")
    nb = notebooks[0]
    kernels, ahead = WarmKernels(report_dir, fork_any=ready), []
    try:
        for position, nb in enumerate(notebooks):
            log(f"  {nb} …")
            start = time.perf_counter()
            if nb == "03_train" and members_ahead.worthwhile(params, notebooks, scheduler):
                ahead.append(members_ahead.start(run_dir, "up"))
            kernel = kernels.take(nb)
            if position + 1 < len(notebooks):
                kernels.start(notebooks[position + 1])
            try:
                _execute(nb, params, report_dir, log, quiet, kernel)
            except PapermillExecutionError as exc:
                result.status, result.error = "failed", _failure_message(nb, exc)
            except KeyboardInterrupt:
                end_pending_tasks()  # before the kernel's shutdown runs the loop again
                raise
            except Exception as exc:  # the kernel died or could not start: still a failed run
                result.status, result.error = "failed", f"{nb} failed: {type(exc).__name__}: {exc}"
            finally:
                kernels.stop(kernel)
            result.timings_s[nb] = round(time.perf_counter() - start, 2)
            if (nb == "03_train" and ahead and not result.error
                    and members_ahead.second_lane_worthwhile(params)):
                ahead.append(members_ahead.start(run_dir, "down"))  # 03's core is free now
            _render(report_dir / f"{nb}.ipynb", with_code)
            log(f"  {nb:<14} {result.timings_s[nb]:7.1f} s  {'FAILED' if result.error else 'ok'}")
            if result.error:
                break
    except KeyboardInterrupt:
        end_pending_tasks()
        reports.record_status(params, notebooks, "interrupted", result.timings_s,
                              error=f"{nb} interrupted")
        raise RunInterrupted(f"run {params.run_id} interrupted during {nb}; what finished before is "
                             f"kept. Resume with: roicast run --resume --run-id {params.run_id}") from None
    except RoicastError as exc:  # the runner's own work between notebooks failed: still the run's end
        reports.record_status(params, notebooks, "failed", result.timings_s, error=f"{nb}: {exc}")
        raise
    finally:
        members_ahead.stop(ahead)
        kernels.close()
        os.environ.pop(store.LOCKED_RUN_ENV, None)
        for name, value in before.items():
            _set_env(name, value)
    if result.status == "running":
        result.status = "succeeded"
        store.clear_scratch(paths.run_dir(params.run_id))
    result.report_index = reports.record_status(params, notebooks, result.status, result.timings_s,
                                                error=result.error)
    if result.error:
        html = report_dir / f"{nb}.html"
        where = f"Full traceback: {html}" if html.exists() else f"Kernel log: {report_dir / nb}.kernel.log"
        raise NotebookError(f"{result.error}\n{where}")
    return result


def _render(executed: Path, with_code: bool) -> None:
    if executed.exists():
        reports.render_notebook(executed, with_code)
