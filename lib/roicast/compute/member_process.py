"""A dask task's work in a Python process of its own: the units of `compute.units` (ensemble
members' shares in 05, walk-forward folds in 04) run this way on a cluster.

A dask worker's own threads (its event loop, its comms) draw from Python's global `random`, the
generator Keras takes its layers' default seeds from, so a network built beside them may start
from other weights than its seed gives. A fresh single-threaded process per task keeps it the
network trained one after another would be, at the cost of one TensorFlow import per task.
The worker itself never imports Keras: the task names its function as `module:function`, the
child imports it, and its outcome travels back pickled, as bytes, to be unpickled by the caller.
"""

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from roicast.compute.cluster import cores
from roicast.errors import RoicastError

CHILD = "from roicast.compute.member_process import child_main; child_main()"
OUTCOME = "outcome.pickle"


def threads_here(workers_per_host: dict[str, int]) -> int:
    """This worker's share of its machine's cores: a network this small keeps barely more than
    one core busy, and workers side by side must not fight over them."""
    from distributed import get_worker
    from distributed.comm import get_address_host

    host = get_address_host(get_worker().address)
    return max(1, cores() // workers_per_host.get(host, 1))


def run_in_child(target: str, args: tuple, kwargs: dict, backend: str,
                 workers_per_host: dict[str, int]) -> tuple[bytes, dict[str, bytes]]:
    """Call `target` (`module:function`) with `args`, `kwargs` and `out_dir`, a folder of its own,
    in a child process; return its pickled outcome (the return value, or the exception it raised)
    and the bytes of every file it left in `out_dir`.

    The caller writes those files where it wants them, so a remote cluster's workers need the
    same code but not the same disk. A child that dies without an outcome raises RoicastError.
    """
    with tempfile.TemporaryDirectory() as out:
        request = (target, args, kwargs, backend, threads_here(workers_per_host), out)
        done = subprocess.run([sys.executable, "-c", CHILD], input=pickle.dumps(request),
                              capture_output=True, check=False)
        outcome = Path(out) / OUTCOME
        if not outcome.exists():
            raise RoicastError(f"its process ended with exit code {done.returncode}: "
                               f"{done.stderr.decode(errors='replace')[-1000:]}")
        files = {path.name: path.read_bytes() for path in Path(out).iterdir()
                 if path.is_file() and path.name != OUTCOME}
        return outcome.read_bytes(), files


def function_of(target: str):
    """The function a `module:function` target names."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def child_main() -> None:
    """The child: the request on stdin; the outcome, pickled, in the request's folder.

    The threads are capped before the backend runs anything, and a backend other than the
    caller's is refused: its network would be another one.
    """
    target, args, kwargs, backend, threads, out = pickle.load(sys.stdin.buffer)
    from roicast.models import backends

    try:
        backends.limit_threads(threads)
        if backends.name() != backend:
            raise RoicastError(f"the dask worker runs Keras on {backends.name()}, not {backend}; "
                               f"start the workers with KERAS_BACKEND={backend}.")
        outcome = function_of(target)(*args, **kwargs, out_dir=Path(out))
    except Exception as exc:
        outcome = exc
    (Path(out) / OUTCOME).write_bytes(pickle.dumps(outcome))
    exit_without_teardown()


def exit_without_teardown(code: int = 0) -> NoReturn:
    """End this process as multiprocessing ends its own: output flushed, no interpreter teardown,
    which after TensorFlow and a trained network costs about 1 s of a core for nothing."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
