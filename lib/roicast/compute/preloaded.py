"""Processes forked from a server that has already imported TensorFlow, Keras and roicast.

A kernel of 03–06 and a lane of members trained ahead import them first: about 5 s of one core
each (benchmarks/README.md), six times in a default run and again in each chain of the test
suite. Python's fork server (`multiprocessing`'s "forkserver") imports them once, in a fresh
process started with the run's environment, and forks each such process from it: the process
starts with them loaded. Importing them runs no TensorFlow op, so no thread pool exists yet to
be lost in the fork, and each process still sizes TensorFlow's threads itself.

What a module reads from the environment when it is imported (Keras's backend, TensorFlow's log
level and thread counts, Python's own variables) is the server's: a process is forked only while
those variables are what they were when the server started (`usable`); otherwise it starts as a
process of its own, as it did before the server.
"""

import ast
import atexit
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing import forkserver
from multiprocessing.connection import wait
from pathlib import Path

# Variables read when the preloaded modules are imported. (roicast's own import also reads
# ROICAST_LOCKED_RUN, set wherever the runner starts the server, and ROICAST_CORES, whose only
# effect is on TF_ variables of the environment, which a forked process takes from its caller.)
IMPORT_TIME_ENV = ("KERAS_", "TF_", "XLA_", "JAX_", "CUDA_", "OMP_", "MKL_", "OPENBLAS_", "PYTHON")

# Keras on PyTorch asks CUDA for its devices as it is imported, after which a forked process
# could not use the GPU; TensorFlow and JAX touch no device until the first operation.
BACKENDS = ("tensorflow", "jax")

_started_with: dict[str, str] | None = None


def import_time_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name.startswith(IMPORT_TIME_ENV)}


def imported_modules(source: str) -> list[str]:
    """The modules an import cell imports (`from roicast.models import training` names both
    `roicast.models` and `roicast.models.training`, which may be a module or a function: the
    server imports what it can)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def start(modules: list[str], log_path: Path) -> None:
    """Start the server importing `modules` (what it prints going to `log_path`), unless one runs
    already with this environment; one started with another (a run on another backend before)
    is stopped first. It imports in the background: the first process forked waits for it."""
    global _started_with
    if (usable() or "forkserver" not in multiprocessing.get_all_start_methods()
            or os.environ.get("KERAS_BACKEND", "tensorflow") not in BACKENDS):
        return  # (Windows has no fork: its processes start on their own)
    if _started_with is not None:
        _stop()
        _started_with = None
    multiprocessing.set_forkserver_preload(list(dict.fromkeys(modules)))
    with _output_to(log_path):  # the server inherits stdout and stderr when it is spawned
        forkserver.ensure_running()
    _started_with = import_time_env()


def _stop() -> None:
    """Stop the server. Any process forked from it that is left over (a caller that never stopped
    it) is killed rather than waited for, and so is the server: told to stop, it would finish its
    imports first, seconds of a core for a server no longer wanted."""
    _kill_forked()
    _kill_server()
    forkserver._forkserver._stop()  # reaps it


def _kill_server() -> None:
    """Kill the server this process started: stopped, or left as its caller exits, it would first
    finish its imports (a run that failed in 01 or 02 would leave seconds of a core behind)."""
    pid = server_pid()
    if pid is not None:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # until it is reaped, the pid is still its own


@atexit.register  # after multiprocessing's own exit hook was registered, so it runs first
def _at_exit() -> None:
    """As this process exits: what was forked from here, then the server."""
    _kill_forked()
    _kill_server()


def _kill_forked() -> None:
    """Kill what is left of the processes forked from here, with their groups, and reap them.

    At exit multiprocessing waits for every child still running; a forked process goes only
    once its caller has gone (`_end_with_the_caller`), so one left running (a kernel an
    interrupt caught while starting) would keep the caller from ever exiting."""
    launch = sys.modules.get("roicast.compute.fork_launch")
    if launch is None:  # nothing was forked here (nor could be: Windows)
        return
    for process in multiprocessing.active_children():
        if isinstance(process, launch.ForkServerProcess):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # its group: what it started too
            process.kill()  # before its setsid, it leads no group yet
            process.join()


def server_pid() -> int | None:
    return forkserver._forkserver._forkserver_pid if _started_with is not None else None


@contextmanager
def _output_to(log_path: Path) -> Iterator[None]:
    """This process's stdout and stderr go to `log_path` meanwhile."""
    saved = [os.dup(1), os.dup(2)]
    try:
        _output_into(log_path)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _output_into(log_path: Path | str) -> None:
    """This process's stdout and stderr, as file descriptors (C libraries' output too), append to
    `log_path`."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def usable() -> bool:
    """Whether a process forked now would see the environment its modules were imported with."""
    return _started_with is not None and _started_with == import_time_env()


def _child(target: Callable, args: tuple, env: dict[str, str], cwd: str, log_path: str) -> None:
    """In the forked process: a session of its own (signals to its group reach it and what it
    starts, Ctrl-C at the terminal does not), the caller's environment and folder, its log as
    stdout and stderr, an end when the caller's process ends; then the work."""
    os.setsid()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    _output_into(log_path)
    threading.Thread(target=_end_with_the_caller, daemon=True).start()
    target(*args)


def _end_with_the_caller() -> None:
    """A process started as a child of the caller would see it go (a kernel polls its parent);
    this one is the server's child, so it watches the caller's end of their pipe, and ends with
    its group once the caller is gone, killed too."""
    wait([multiprocessing.parent_process().sentinel])
    os.killpg(os.getpid(), signal.SIGKILL)


class ForkedProcess:
    """A process forked from the server, behind the part of `subprocess.Popen` that its users
    (jupyter_client, the runner) call."""

    stdin = stdout = stderr = None

    def __init__(self, process: multiprocessing.Process):
        self.process, self.pid = process, process.pid

    def poll(self) -> int | None:
        return None if self.process.is_alive() else self.process.exitcode

    def wait(self, timeout: float | None = None) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork(target: Callable, args: tuple, log_path: Path, cwd: Path | None = None,
         env: dict[str, str] | None = None, name: str = "roicast") -> ForkedProcess:
    """Run `target(*args)` in a process forked from the server (`usable` says whether to)."""
    from roicast.compute.fork_launch import ForkServerProcess  # not on Windows, which has no fork

    process = ForkServerProcess(
        target=_child, name=name,
        args=(target, args, dict(os.environ if env is None else env), str(cwd or os.getcwd()), str(log_path)))
    process.start()
    return ForkedProcess(process)
