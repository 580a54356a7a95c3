"""Several networks with different seeds, averaged; their spread gives an interval.

Member 0 is the model 03_train already fitted with the run's seed, so an ensemble of
five trains four more; with `member_variants`, those cycle through several hyper-parameter
sets (other widths, dropouts, learning rates…) instead of repeating the run's network. On a
CPU they train in parallel worker processes: TensorFlow keeps barely more than one core busy
with a network this small, so each worker gets its share of the cores and two cores train
two members at once (benchmarks/README.md has the numbers).
With a GPU, or a single core, they train one after another in this process. Members may
also train on bootstrap resamples of the training windows. Two combinations are reported:
equal weights, and weights proportional to the inverse validation loss (validation only,
never the test period).
"""

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from roicast.artefacts import atomic_path, write_json
from roicast.backends import gpu_available, limit_threads
from roicast.config import RunParams
from roicast.training import predict, train


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


def _as_member(model: keras.Model, arrays: dict, seed: int, variant: dict, info: dict) -> Member:
    return Member(seed, variant, info["best_val_loss"], info["epochs_run"], info["fit_seconds"],
                  predict(model, arrays, arrays["test_idx"]), predict(model, arrays, arrays["val_idx"]))


def train_member(arrays: dict, params: RunParams, seed: int, out_dir: Path,
                 variant: dict | None = None) -> Member:
    """Train one member, save it as `member_<seed>.keras` in `out_dir`, forecast val and test."""
    variant = variant or {}
    train_idx = bootstrap_indices(arrays["train_idx"], seed) if params.bootstrap else None
    with tempfile.TemporaryDirectory(dir=out_dir) as work:
        result = train(arrays, params.with_variant(variant), Path(work), seed=seed,
                       train_indices=train_idx, verbose=0)
    with atomic_path(Path(out_dir) / f"member_{seed}.keras") as tmp:
        result.model.save(tmp)
    return _as_member(result.model, arrays, seed, variant, result.info)


def parallel_workers(n_members: int) -> int:
    """Worker processes for training `n_members`: one per core on a CPU; 0 (this process)
    with a GPU, a single core or a single member."""
    workers = min(n_members, os.cpu_count() or 1)
    return 0 if workers < 2 or gpu_available() else workers


def _report(member: Member) -> None:
    print(f"member {member.seed} ({describe_variant(member.variant)}): best val_loss "
          f"{member.val_loss:.5f}, {member.epochs_run} epochs, {member.fit_seconds:.0f} s", flush=True)


def train_seeds(arrays: dict, params: RunParams, seeds: list[int], out_dir: Path,
                workers: int, variants: list[dict] | None = None) -> list[Member]:
    """One member per seed (with its variant, if given), in seed order: in `workers`
    processes, or here when 0."""
    variants = variants or [{}] * len(seeds)
    if not workers:
        trained = []
        for seed, variant in zip(seeds, variants, strict=True):
            trained.append(train_member(arrays, params, seed, out_dir, variant))
            _report(trained[-1])
        return trained
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
    with ProcessPoolExecutor(workers, mp_context=context, initializer=limit_threads,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(train_member, arrays, params, seed, out_dir, variant)
                   for seed, variant in zip(seeds, variants, strict=True)]
        for future in as_completed(futures):
            _report(future.result())
        return [future.result() for future in futures]


def train_members(arrays: dict, params: RunParams, run_dir: Path, first_model: keras.Model,
                  first_info: dict) -> tuple[list[Member], dict]:
    """03_train's model plus the members the run still lacks, saved in ensemble/.

    Returns the members in seed order and how they were trained (wall seconds, workers).
    """
    out = Path(run_dir) / "ensemble"
    out.mkdir(parents=True, exist_ok=True)
    seeds, variants = member_seeds(params)[1:], member_variants(params)[1:]
    workers = parallel_workers(len(seeds))
    print(f"training {len(seeds)} member(s) "
          + (f"in {workers} worker processes" if workers else "in this process"), flush=True)
    start = time.perf_counter()
    trained = train_seeds(arrays, params, seeds, out, workers, variants)
    first = _as_member(first_model, arrays, params.seed, {}, first_info)
    return [first, *trained], {"wall_seconds": time.perf_counter() - start, "workers": workers}


def combine(members: list[Member], period: str = "test") -> dict[str, np.ndarray]:
    """Equal-weight and inverse-validation-loss-weight averages of the members' forecasts."""
    stacked = np.stack([getattr(m, period) for m in members])
    weights = 1 / np.array([m.val_loss for m in members])
    return {"equal": stacked.mean(axis=0),
            "val_weighted": np.tensordot(weights / weights.sum(), stacked, axes=1)}


def spread_interval(members: list[Member], level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central `level` interval of the members' test forecasts (empirical quantiles)."""
    stacked = np.stack([m.test for m in members])
    tail = (1 - level) / 2
    return np.quantile(stacked, tail, axis=0), np.quantile(stacked, 1 - tail, axis=0)


def calibrated_interval(members: list[Member], val_actual: np.ndarray,
                        level: float) -> tuple[np.ndarray, np.ndarray]:
    """The equal-weight ensemble ± the `level` quantile of its absolute validation errors.

    Split conformal prediction per asset: calibrated on the validation period only, so
    its test coverage is an honest check, unlike the members' spread, which measures
    only how much the members disagree.
    """
    errors = np.abs(np.asarray(val_actual) - combine(members, "val")["equal"])
    half_width = np.quantile(errors, level, axis=0)
    centre = combine(members)["equal"]
    return centre - half_width, centre + half_width


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of test values inside the interval."""
    return float(np.mean((actual >= lower) & (actual <= upper)))


def verdict(table, metric: str = "r2") -> str:
    """One sentence: is the ensemble better than its average member on `metric`?"""
    members = table[[str(name).startswith("member_") for name in table.index]][metric]
    ensemble_value = table.loc["ensemble", metric]
    better = ensemble_value > members.mean()
    return (f"The ensemble's {metric} is {ensemble_value:.4f}; its members average "
            f"{members.mean():.4f} (best {members.max():.4f}). The ensemble is "
            f"{'better' if better else 'NOT better'} than its average member.")


def record(path: Path, members: list[Member], table, metrics: dict | None,
           seconds: float, coverage: dict) -> dict:
    """Write ensemble.json: the ensemble's rows, its members and its training time.

    It is 05's own section of metrics.json (`roicast.store.assemble_metrics` merges it in).
    `table` holds each member's scores (rows `member_<seed>`); `metrics` the ensemble's in
    both spaces, None for the direction task.
    """
    scored = ("mae", "rmse", "r2") if metrics else ()
    parts: dict = {"ensemble_fit_seconds": seconds, "interval_coverage": coverage,
                   "members": [{"seed": m.seed, "variant": m.variant, "val_loss": m.val_loss,
                                **{k: table.loc[f"member_{m.seed}", k] for k in scored}}
                               for m in members]}
    if metrics:
        parts["metrics"] = {space: {"ensemble": metrics[space]["ensemble"]} for space in metrics}
    write_json(path, parts)
    return parts
