"""One ensemble member trained in a Python process of its own: what a dask task of 05 runs.

A dask worker's own threads (its event loop, its comms) draw from Python's global `random`, the
generator Keras takes its layers' default seeds from, so a member built beside them may start
from other weights than its seed gives. A fresh single-threaded process per member keeps it the
network trained one after another would be, at the cost of one TensorFlow import per member.
The worker itself never imports Keras: the child's outcome travels back pickled, as bytes, and
is unpickled by the caller.
"""

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from distributed import get_worker
from distributed.comm import get_address_host

from roicast.config import RunParams
from roicast.errors import RoicastError

CHILD = "from roicast.member_process import child_main; child_main()"
OUTCOME = "outcome.pickle"


def threads_here(workers_per_host: dict[str, int]) -> int:
    """This worker's share of its machine's cores: a network this small keeps barely more than
    one core busy, and workers side by side must not fight over them."""
    host = get_address_host(get_worker().address)
    return max(1, (os.cpu_count() or 1) // workers_per_host.get(host, 1))


def train_in_child(arrays: dict, params: RunParams, seed: int, variant: dict, backend: str,
                   workers_per_host: dict[str, int]) -> tuple[bytes, bytes | None]:
    """Train one member in a child process; return its pickled outcome (the Member, or the
    exception it raised) and the bytes of its saved model (None when it failed).

    The child saves into a folder of its own and the caller writes the file, so a remote
    cluster's workers need the same code but not the same disk.
    """
    with tempfile.TemporaryDirectory() as out:
        request = (arrays, params, seed, variant, backend, threads_here(workers_per_host), out)
        done = subprocess.run([sys.executable, "-c", CHILD], input=pickle.dumps(request),
                              capture_output=True, check=False)
        outcome, model = Path(out) / OUTCOME, Path(out) / f"member_{seed}.keras"
        if not outcome.exists():
            raise RoicastError(f"its process ended with exit code {done.returncode}: "
                               f"{done.stderr.decode(errors='replace')[-1000:]}")
        return outcome.read_bytes(), model.read_bytes() if model.exists() else None


def child_main() -> None:
    """The child: the request on stdin; the outcome, pickled, in the request's folder.

    The threads are capped before the backend runs anything, and a backend other than the
    caller's is refused: its member would be another network.
    """
    arrays, params, seed, variant, backend, threads, out = pickle.load(sys.stdin.buffer)
    from roicast import backends
    from roicast.ensemble import train_member

    try:
        backends.limit_threads(threads)
        if backends.name() != backend:
            raise RoicastError(f"the dask worker runs Keras on {backends.name()}, not {backend}; "
                               f"start the workers with KERAS_BACKEND={backend}.")
        outcome = train_member(arrays, params, seed, Path(out), variant)
    except Exception as exc:
        outcome = exc
    (Path(out) / OUTCOME).write_bytes(pickle.dumps(outcome))
