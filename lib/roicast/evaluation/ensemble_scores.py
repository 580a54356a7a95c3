"""05's scores of an ensemble: its two combinations, its members and the baselines on the test
period, its intervals' coverage, its backtest and ensemble.json.

Two combinations are reported: equal weights, and weights proportional to the inverse
validation loss (validation only, never the test period). `score_ensemble`,
`interval_coverage` and `backtest` fit the run's task: regression members are scored against
the baselines, direction members against the majority class. Members that forecast a
distribution of the H-day sum are also scored as their mixture (`distribution_scores`), beside
04's distributional predictors on the same periods.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from roicast.config import RunParams
from roicast.evaluation import distscore, evaluate, trading
from roicast.features.dataset import Dataset
from roicast.features.preprocess import to_roi_pct
from roicast.models.ensemble import Member
from roicast.runs import store
from roicast.runs.artefacts import write_json


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


REGRESSION_COLUMNS = ("mae", "rmse", "r2")  # what ensemble.json records of each member
DIRECTION_COLUMNS = ("accuracy", "precision", "recall", "roc_auc", "p_value_vs_majority")


@dataclass
class EnsembleScores:
    """The ensembles, members and baselines on the test period, and what ensemble.json keeps."""

    table: pd.DataFrame  # one row per ensemble, member and baseline (or the majority class)
    metric: str  # the column the verdict and the figure compare: r2, or accuracy for direction
    section: dict  # the ensemble's rows for metrics.json, under `metrics` or `classification`
    member_columns: tuple[str, ...] = field(default=REGRESSION_COLUMNS)

    def verdict(self) -> str:
        return verdict(self.table, self.metric)


def score_ensemble(dataset: Dataset, scalers: dict, members: list[Member],
                   params: RunParams) -> EnsembleScores:
    """Score both combinations, every member and the baselines on the test windows.

    Regression: every metric in both spaces, the table in ROI percent, best R² first. Direction:
    the equal-weight ensemble and the members' probabilities against the majority class.
    """
    combined, test_idx = combine(members), dataset.test_idx
    each = {f"member_{m.seed}": m.test for m in members}
    if params.task_spec.classifies:
        scores = evaluate.score_direction(dataset, {"ensemble": combined["equal"], **each}, test_idx,
                                          params.direction_of)
        table = pd.DataFrame(scores).T.sort_values("accuracy", ascending=False)
        return EnsembleScores(table, "accuracy", {"classification": {"ensemble": scores["ensemble"]}},
                              DIRECTION_COLUMNS)
    forecasts = {"ensemble": combined["equal"], "ensemble_val_weighted": combined["val_weighted"], **each,
                 **evaluate.baseline_forecasts(dataset, scalers, test_idx, params.model_plugins)}
    metrics = evaluate.score(dataset, scalers, forecasts, test_idx)
    section = {"metrics": {space: {"ensemble": metrics[space]["ensemble"]} for space in metrics}}
    return EnsembleScores(evaluate.metrics_table(metrics, "roi_pct"), "r2", section)


def interval_coverage(dataset: Dataset, members: list[Member], params: RunParams) -> dict[str, float]:
    """Test coverage of the members' spread and of the calibrated interval at `params.interval`,
    printed with their mean widths; {} for the direction task, whose probabilities have none."""
    if params.task_spec.classifies:
        print("The direction task forecasts probabilities: there is no interval to check.")
        return {}
    level = params.interval
    actual = {period: dataset.target_rows(dataset.indices(period)) for period in ("val", "test")}
    intervals = {"members' spread": spread_interval(members, level),
                 "calibrated on validation": calibrated_interval(members, actual["val"], level)}
    coverages = {}
    for name, (lower, upper) in intervals.items():
        covered = coverages[name] = coverage(actual["test"], lower, upper)
        print(f"nominal {level:.0%} interval, {name}: covers {covered:.1%} of test values, "
              f"mean width {float((upper - lower).mean()):.4f} (scaled)")
    return coverages


def backtest(dataset: Dataset, scalers: dict, members: list[Member], params: RunParams) -> pd.DataFrame:
    """`trading.long_short_backtest` of the equal-weight ensemble on the test period: ranked by its
    forecast ROI, or by its probability of an up day for the direction task."""
    combined = combine(members)["equal"]
    signal = combined - 0.5 if params.task_spec.classifies else to_roi_pct(combined, scalers)
    test = dataset.test_idx
    return trading.long_short_backtest(signal, dataset.target_rows(test, "returns_pct"),
                                       dataset.target_rows(test, "dates"), dataset.assets,
                                       params.trading_cost_bps)


def distribution_scores(dataset: Dataset, scalers: dict, params: RunParams, first_model,
                        run_dir: Path) -> distscore.Section | distscore.Unavailable | None:
    """04's distribution section scored again with the members' mixture ('ensemble': 03's network
    and the members saved in `run_dir`, calibrated on the validation windows) beside 03's network
    alone ('hybrid'); None when the members forecast points (the section is 04's alone)."""
    if not params.distributional or dataset.target_of != "sum":
        print("The members forecast points: no distribution to mix (output='distribution' with "
              "target='sum' scores their mixture here).")
        return None
    from roicast.models import hybrid  # loads Keras: only for a distribution run

    networks = [first_model, *(hybrid.load_model(path)
                               for path in sorted((run_dir / store.ENSEMBLE).glob(store.MEMBERS)))]
    extra = {"hybrid": distscore.network_forecaster(networks[:1], dataset, scalers),
             "ensemble": distscore.network_forecaster(networks, dataset, scalers)}
    return distscore.for_run(dataset, params.horizon_days, extra)


def distribution_record(scored: distscore.Section | distscore.Unavailable | None) -> dict:
    """The mixture's part of metrics.json's `distribution` (04 writes the rest): its RPS, CRPS and
    summary under the name 'ensemble'."""
    if not isinstance(scored, distscore.Section):
        return {}
    record = scored.record()
    return {"distribution": {"rps": {"ensemble": record["rps"]["ensemble"]},
                             "crps": {"ensemble": record["crps"]["ensemble"]},
                             "predictors": {"ensemble": record["predictors"]["ensemble"]}}}


def record(path: Path, members: list[Member], scores: EnsembleScores, seconds: float,
           coverage: dict, distribution: distscore.Section | distscore.Unavailable | None = None) -> dict:
    """Write ensemble.json: the ensemble's rows, its members and its training time.

    It is 05's own section of metrics.json (`roicast.runs.store.assemble_metrics` merges it in): the
    ensemble's scores under `metrics` (regression) or `classification` (direction), beside 04's.
    """
    parts: dict = {"ensemble_fit_seconds": seconds, "interval_coverage": coverage,
                   "members": [{"seed": m.seed, "variant": m.variant, "val_loss": m.val_loss,
                                **{k: scores.table.loc[f"member_{m.seed}", k] for k in scores.member_columns}}
                               for m in members],
                   **scores.section, **distribution_record(distribution)}
    write_json(path, parts)
    return parts
