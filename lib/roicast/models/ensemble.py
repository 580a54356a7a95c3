"""Several networks with different seeds, averaged; their spread gives an interval.

Member 0 is the model 03_train already fitted with the run's seed, so an ensemble of
five trains four more; with `member_variants`, those cycle through several hyper-parameter
sets (other widths, dropouts, learning rates…) instead of repeating the run's network. On a
CPU they train as dask tasks, the engine of sweeps: on a LocalCluster of one single-threaded
worker process per core, since TensorFlow keeps barely more than one core busy with a network
this small, so two cores train two members at once; or, when the runner names a scheduler
(`roicast run --scheduler`, passed on as ROICAST_SCHEDULER), on that existing cluster. Each
task trains its share of the members in turn, in a Python process of its own
(`roicast.compute.member_process` says why) that imports TensorFlow once and traces one network for
all of them (`training.CompiledNetworks`). With a GPU, or a single core, and no scheduler, they
train side by side as one model in this process (`roicast.models.member_stack`). Either way each
member is the network its seed and variant give when trained alone, to the last bit (tests).
Members may also train on bootstrap resamples of the training windows. Two combinations are
reported: equal weights, and weights proportional to the inverse validation loss (validation
only, never the test period); `roicast.evaluation.ensemble_scores` scores them.
"""

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from roicast.compute import members_ahead
from roicast.compute.cluster import local_workers, scheduler_address
from roicast.compute.units import on_cluster, run_units
from roicast.config import RunParams
from roicast.errors import RoicastError
from roicast.features.dataset import Dataset
from roicast.models.member_stack import MemberSpec, stacks, train_stack
from roicast.models.training import CompiledNetworks, predict, train
from roicast.runs import store
from roicast.runs.artefacts import atomic_path


@dataclass
class Member:
    seed: int
    variant: dict  # the parameters this member changes from the run's; {} for none
    val_loss: float
    epochs_run: int
    fit_seconds: float
    test: np.ndarray
    val: np.ndarray


def member_seeds(params: RunParams) -> list[int]:
    return [params.seed + k for k in range(params.n_members)]


def member_variants(params: RunParams) -> list[dict]:
    """Each member's hyper-parameter variant, in seed order: member 0 is the run's own
    network ({}); the others cycle through `params.member_variants`, if any."""
    cycle = params.member_variants or [{}]
    return [{}] + [cycle[k % len(cycle)] for k in range(params.n_members - 1)]


def describe_variant(variant: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in variant.items()) or "the run's network"


def bootstrap_indices(train_indices: np.ndarray, seed: int) -> np.ndarray:
    """Training windows drawn with replacement, kept in date order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train_indices, size=len(train_indices), replace=True))


def _as_member(model: keras.Model, dataset: Dataset, seed: int, variant: dict, info: dict) -> Member:
    return Member(seed, variant, info["best_val_loss"], info["epochs_run"], info["fit_seconds"],
                  predict(model, dataset, dataset.test_idx), predict(model, dataset, dataset.val_idx))


def train_member(dataset: Dataset, params: RunParams, seed: int, out_dir: Path,
                 variant: dict | None = None, networks: CompiledNetworks | None = None) -> Member:
    """Train one member, save it as `member_<seed>.keras` in `out_dir`, forecast val and test."""
    variant = variant or {}
    train_idx = bootstrap_indices(dataset.train_idx, seed) if params.bootstrap else None
    with tempfile.TemporaryDirectory(dir=out_dir) as work:
        result = train(dataset, params.with_variant(variant), Path(work), seed=seed,
                       train_indices=train_idx, verbose=0, networks=networks)
    with atomic_path(Path(out_dir) / store.member_file(seed)) as tmp:
        result.model.save(tmp)
    return _as_member(result.model, dataset, seed, variant, result.info)


def _report(member: Member) -> None:
    print(f"member {member.seed} ({describe_variant(member.variant)}): best val_loss "
          f"{member.val_loss:.5f}, {member.epochs_run} epochs, {member.fit_seconds:.0f} s", flush=True)


@contextmanager
def _naming(seeds: list[int], variants: list[dict]) -> Iterator[None]:
    """Turn whatever members raise into one error that says which member(s) failed."""
    try:
        yield
    except Exception as exc:
        which = ", ".join(f"{seed} ({describe_variant(variant)})"
                          for seed, variant in zip(seeds, variants, strict=True))
        raise RoicastError(f"Ensemble member{'s' if len(seeds) > 1 else ''} {which} failed: "
                           f"{type(exc).__name__}: {exc}") from exc


def member_specs(dataset: Dataset, params: RunParams, seeds: list[int],
                 variants: list[dict]) -> list[MemberSpec]:
    """Each member's seed, parameters (the run's with its variant) and training windows."""
    specs = []
    for seed, variant in zip(seeds, variants, strict=True):
        with _naming([seed], [variant]):
            windows = bootstrap_indices(dataset.train_idx, seed) if params.bootstrap else dataset.train_idx
            specs.append(MemberSpec(seed, variant, params.with_variant(variant), windows))
    return specs


def train_here(dataset: Dataset, params: RunParams, seeds: list[int], variants: list[dict],
               out_dir: Path) -> list[Member]:
    """Every member in this process (a GPU, a single core), side by side in one model
    (`member_stack`): each the network it would be if trained alone, in one fit and one trace."""
    trained = {}
    for stack in stacks(member_specs(dataset, params, seeds, variants)):
        with _naming([spec.seed for spec in stack], [spec.variant for spec in stack]):
            results = train_stack(dataset, stack)
        for spec, result in zip(stack, results, strict=True):
            with atomic_path(Path(out_dir) / store.member_file(spec.seed)) as tmp:
                result.model.save(tmp)
            info = {"best_val_loss": result.best_val_loss, "epochs_run": result.epochs_run,
                    "fit_seconds": result.fit_seconds}
            trained[spec.seed] = _as_member(result.model, dataset, spec.seed, spec.variant, info)
    return [trained[seed] for seed in seeds]


def train_in_turn(dataset: Dataset, params: RunParams, seeds: list[int], variants: list[dict],
                  out_dir: Path, claim: Callable[[int], bool] | None = None) -> list[Member]:
    """Members one after another in this process, those of one shape on one traced network
    (`training.CompiledNetworks`): each the network it would be if trained alone. With `claim`,
    up to the first seed it refuses (another process trains the rest: `members_ahead`)."""
    networks, trained = CompiledNetworks(), []
    for seed, variant in zip(seeds, variants, strict=True):
        if claim is not None and not claim(seed):
            break
        with _naming([seed], [variant]):
            trained.append(train_member(dataset, params, seed, out_dir, variant, networks))
    return trained


MEMBERS_IN_TURN = "roicast.models.ensemble:train_in_turn"  # a share of members in a dask task's process
MEMBERS_SIDE_BY_SIDE = "roicast.models.ensemble:train_here"  # every member here, as one model


def member_shares(seeds: list[int], variants: list[dict]) -> Callable[[int], dict[int, tuple]]:
    """The members split into one share per worker: seed k goes to share k mod workers, so the
    same seeds meet the same order."""
    def split(workers: int) -> dict[int, tuple]:
        n = max(1, min(len(seeds), workers))
        return {k: (seeds[k::n], variants[k::n]) for k in range(n)}
    return split


def train_seeds(dataset: Dataset, params: RunParams, seeds: list[int], out_dir: Path, workers: int,
                variants: list[dict] | None = None, scheduler: str | None = None) -> list[Member]:
    """One member per seed (with its variant, if given), in seed order, saved in `out_dir`.

    On the cluster of `scheduler` if given, or a LocalCluster of `workers` processes, each task
    trains its share of the members in turn in a process of its own (`compute.member_process`):
    one TensorFlow import and one trace per share, not per member; the dataset travels to the
    cluster once. Else here, side by side (`train_here`). A share that fails is reported and the
    members of the others are kept (`compute.units`); when no member is left, one RoicastError
    names every failure.
    """
    variants = variants or [{}] * len(seeds)
    if not seeds:
        return []
    target = MEMBERS_IN_TURN if on_cluster(scheduler, workers) else MEMBERS_SIDE_BY_SIDE
    trained, failures = {}, []
    for done in run_units(target, (dataset, params), member_shares(seeds, variants), scheduler, workers,
                          work_root=out_dir):
        if done.failed:
            failures.append(str(done.value) if isinstance(done.value, RoicastError)
                            else f"{type(done.value).__name__}: {done.value}")
            print(f"FAILED: {failures[-1]}", flush=True)
            continue
        for member in done.value:
            name = store.member_file(member.seed)
            with atomic_path(Path(out_dir) / name) as tmp:
                tmp.write_bytes(done.files[name])
            _report(member)
            trained[member.seed] = member
    if not trained:
        raise RoicastError("; ".join(failures))
    return [trained[seed] for seed in seeds if seed in trained]


def _where(scheduler: str | None, workers: int) -> str:
    if scheduler:
        return f"on the dask cluster at {scheduler}"
    if workers:
        return f"on a dask LocalCluster of {workers} worker processes"
    return "side by side in this process"


def train_members(dataset: Dataset, params: RunParams, run_dir: Path, first_model: keras.Model,
                  first_info: dict) -> tuple[list[Member], dict]:
    """03_train's model plus the members the run still lacks, saved in ensemble/.

    Returns the members in seed order and how they were trained: wall seconds, this machine's
    worker processes (0: this process or a remote cluster), the scheduler, if the runner
    named one (ROICAST_SCHEDULER), and whether they were trained ahead (`members_ahead`).
    """
    out = store.artefact_path(run_dir, "05_ensemble", store.ENSEMBLE)
    out.mkdir(parents=True, exist_ok=True)
    first = _as_member(first_model, dataset, params.seed, {}, first_info)
    waited = time.perf_counter()
    ahead = members_ahead.take(run_dir, params)
    if ahead is not None:
        trained, seconds = ahead
        for member in trained:
            with atomic_path(out / store.member_file(member.seed)) as tmp:
                shutil.copyfile(members_ahead.member_file(run_dir, member.seed), tmp)
            _report(member)
        print(f"{len(trained)} member(s) trained ahead, beside 03_train, in {seconds:.0f} s; "
              f"waited {time.perf_counter() - waited:.0f} s for them", flush=True)
        return [first, *trained], {"wall_seconds": seconds, "workers": 1, "scheduler": None, "ahead": True}
    seeds, variants = member_seeds(params)[1:], member_variants(params)[1:]
    scheduler = scheduler_address()
    workers = 0 if scheduler else local_workers(len(seeds))
    print(f"training {len(seeds)} member(s) {_where(scheduler, workers)}", flush=True)
    start = time.perf_counter()
    trained = train_seeds(dataset, params, seeds, out, workers, variants, scheduler)
    return [first, *trained], {"wall_seconds": time.perf_counter() - start, "workers": workers,
                               "scheduler": scheduler, "ahead": False}
