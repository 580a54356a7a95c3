"""The one place roicast makes a dask Client: a LocalCluster on this machine, or an existing
cluster given by its scheduler's address.

Sweeps (`roicast sweep --scheduler`) and ensemble members (the runner passes `roicast run
--scheduler` to the notebook kernels as ROICAST_SCHEDULER) run on the same engine, so a user who
outgrows one machine points both at one cluster. dask is imported only when a client is made:
the command line and the runner stay quick to start.
"""

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from roicast.errors import RoicastError

if TYPE_CHECKING:
    from dask.distributed import Client

SCHEDULER_ENV = "ROICAST_SCHEDULER"
SCHEDULER_TIMEOUT = "5s"  # an unreachable scheduler fails this fast instead of after dask's 30 s
CORES_ENV = "ROICAST_CORES"


def cores() -> int:
    """The CPU cores roicast may use: ROICAST_CORES where the machine is shared (a test worker's
    share, a box others use too), else all of this machine's. Worker processes, members trained
    ahead and thread pools all follow it."""
    value = os.environ.get(CORES_ENV)
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise RoicastError(f"{CORES_ENV}={value!r}: give a whole number of cores, 1 or more")
    return int(value)


def scheduler_address() -> str | None:
    """The scheduler the runner handed to this notebook kernel, or None for a local cluster."""
    return os.environ.get(SCHEDULER_ENV) or None


def local_workers(n_tasks: int) -> int:
    """LocalCluster worker processes for `n_tasks` trainings (ensemble members, walk-forward
    folds): one per core on a CPU; 0 (this process) with a GPU, a single core or a single task."""
    from roicast.models.backends import gpu_available

    workers = min(n_tasks, cores())
    return 0 if workers < 2 or gpu_available() else workers


def connect(scheduler: str | None, workers: int) -> "Client":
    """A client of the scheduler at `scheduler`, or of a new LocalCluster of `workers`
    single-threaded processes without a dashboard.

    The LocalCluster belongs to the client, so closing the client (leaving its `with` block)
    stops the worker processes too, instead of leaving them to the garbage collector.
    """
    from dask.distributed import Client

    if scheduler:
        try:
            return Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except (OSError, ValueError) as exc:
            raise RoicastError(f"Cannot reach the dask scheduler at {scheduler} within "
                               f"{SCHEDULER_TIMEOUT} ({exc}). Check the address (tcp://host:8786) "
                               "and that the scheduler is running.") from None
    with _environment_kept():
        return Client(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


@contextmanager
def _environment_kept() -> Iterator[None]:
    """Undo what dask's nannies write into this process's environment to pass to their workers
    (`distributed.nanny.pre-spawn-environ`: OMP_NUM_THREADS=1 and the like): left there, every
    process started from here afterwards (a notebook kernel, a test's run) computed on one BLAS
    thread."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def workers_per_host(client: "Client") -> dict[str, int]:
    """How many of the cluster's workers share each machine (to share out its cores)."""
    from distributed.comm import get_address_host

    return dict(Counter(get_address_host(address) for address in client.scheduler_info()["workers"]))
