"""One loop for work made of independent units: walk-forward folds (04) and shares of ensemble
members (05), here one after another or as dask tasks each in a process of its own.

One failure policy for both: a unit that fails is handed on as its exception, beside the units
that succeeded, and the caller reports it and keeps the others. A unit is `target(*shared,
*args, out_dir=...)` for a `module:function` target; the files it leaves in `out_dir` come back
as bytes, so the caller writes them where it wants them, here or from a remote cluster alike.
"""

import pickle
import tempfile
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roicast.compute.cluster import connect, workers_per_host
from roicast.compute.member_process import function_of, run_in_child


@dataclass
class Done:
    """A finished unit: what it returned, or the exception it raised, and the files it left."""

    key: Hashable
    value: Any
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return isinstance(self.value, Exception)


def on_cluster(scheduler: str | None, workers: int) -> bool:
    """Units go to dask: the cluster at `scheduler`, or a LocalCluster of `workers` ≥ 2 processes."""
    return bool(scheduler) or workers >= 2


Units = dict[Hashable, tuple] | Callable[[int], dict[Hashable, tuple]]  # or made for a number of workers


def run_units(target: str, shared: tuple, units: Units, scheduler: str | None = None, workers: int = 0,
              work_root: Path | None = None) -> Iterator[Done]:
    """Each unit's outcome as it finishes: on the cluster at `scheduler` if given, else on a
    LocalCluster of `workers` processes (no more than there are units) when `workers` ≥ 2, else
    here, in order, with its scratch folder in `work_root`. `shared` travels to the cluster once,
    not once per unit; `units` may be a function of the number of workers, to split work into
    that many shares."""
    if on_cluster(scheduler, workers):
        yield from _on_cluster(target, shared, units, scheduler, workers)
    else:
        yield from _here(target, shared, units(1) if callable(units) else units, work_root)


def _here(target: str, shared: tuple, units: dict[Hashable, tuple], work_root: Path | None) -> Iterator[Done]:
    function = function_of(target)
    for key, args in units.items():
        with tempfile.TemporaryDirectory(dir=work_root) as out:
            try:
                value = function(*shared, *args, out_dir=Path(out))
            except Exception as exc:
                value = exc
            files = {path.name: path.read_bytes() for path in Path(out).iterdir() if path.is_file()}
        yield Done(key, value, files)


def _on_cluster(target: str, shared: tuple, units: Units, scheduler: str | None,
                workers: int) -> Iterator[Done]:
    from dask.distributed import as_completed

    from roicast.models import backends

    if not callable(units):  # a worker with no unit to run would only cost its start
        workers = min(workers, max(1, len(units)))
    with connect(scheduler, workers) as client:
        shares = workers_per_host(client)
        if callable(units):
            units = units(max(1, sum(shares.values())))
        scattered = tuple(client.scatter(list(shared))) if shared else ()
        futures = {client.submit(run_in_child, target, (*scattered, *args), {}, backends.name(), shares,
                                 pure=False): key for key, args in units.items()}
        for future in as_completed(futures):
            try:
                outcome, files = future.result()
                done = Done(futures[future], pickle.loads(outcome), files)
            except Exception as exc:
                done = Done(futures[future], exc)
            yield done
