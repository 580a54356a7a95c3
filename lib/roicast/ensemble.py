"""Several networks with different seeds, averaged; their spread gives an interval.

Member 0 is the model 03_train already fitted with the run's seed, so an ensemble of
five trains four more. Members may also train on bootstrap resamples of the training
windows. Two combinations are reported: equal weights, and weights proportional to the
inverse validation loss (validation only, never the test period).
"""

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from roicast.artefacts import atomic_path
from roicast.config import RunParams
from roicast.training import predict, train


@dataclass
class Member:
    seed: int
    val_loss: float
    fit_seconds: float
    test: np.ndarray
    val: np.ndarray


def member_seeds(params: RunParams) -> list[int]:
    return [params.seed + k for k in range(params.n_members)]


def bootstrap_indices(train_indices: np.ndarray, seed: int) -> np.ndarray:
    """Training windows drawn with replacement, kept in date order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train_indices, size=len(train_indices), replace=True))


def _as_member(model: keras.Model, arrays: dict, seed: int, val_loss: float,
               seconds: float) -> Member:
    return Member(seed, val_loss, seconds, predict(model, arrays, arrays["test_idx"]),
                  predict(model, arrays, arrays["val_idx"]))


def train_members(arrays: dict, params: RunParams, run_dir: Path, first_model: keras.Model,
                  first_info: dict, verbose: int = 2) -> list[Member]:
    """Train the members the run still lacks and save each as ensemble/member_<seed>.keras."""
    out = Path(run_dir) / "ensemble"
    out.mkdir(parents=True, exist_ok=True)
    members = [_as_member(first_model, arrays, params.seed, first_info["best_val_loss"],
                          first_info["fit_seconds"])]
    for seed in member_seeds(params)[1:]:
        print(f"member seed {seed}")
        train_idx = bootstrap_indices(arrays["train_idx"], seed) if params.bootstrap else None
        result = train(arrays, params, out / f"work_{seed}", seed=seed, train_indices=train_idx,
                       verbose=verbose)
        with atomic_path(out / f"member_{seed}.keras") as tmp:
            result.model.save(tmp)
        members.append(_as_member(result.model, arrays, seed, result.info["best_val_loss"],
                                  result.info["fit_seconds"]))
    return members


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
