"""Walk-forward evaluation: retrain on the past, test on the period that follows, many times over.

One test period is one draw of the market; the folds show how much the scores move from
one period to the next. The folds are equal blocks (`walk_forward_unit='block'`, expanding
windows, the last fold the chain's own split) or calendar years (`'year'`, expanding or rolling
over `walk_forward_train_years`). Every fold refits everything that is fitted (clip bounds,
scalers, the network or `walk_forward_members` networks averaged, the ridge baseline) on its own
training period, so no fold sees its test period. A network that forecasts the distribution of
the H-day sum (`output='distribution'`, `target='sum'`) is also scored the M6 way in every fold,
beside the distributional baselines, on the fold's non-overlapping H-day test periods
(`distscore`): RPS and CRPS in the records' space 'distribution'.

Folds train in this process one after another, or as dask tasks on the engine of ensemble
members (`roicast.compute.cluster`), each in a process of its own (`roicast.compute.member_process`) so that a
fold's network is the one its seed gives. A failed fold is reported and the others kept.
"""

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from roicast import plots
from roicast.compute.cluster import local_workers
from roicast.compute.units import run_units
from roicast.config import RunParams
from roicast.errors import RoicastError
from roicast.evaluation import distscore, evaluate, study
from roicast.features import preprocess
from roicast.features.dataset import Dataset
from roicast.features.windows import default_test_years, sample_indices, walk_forward_splits, year_splits
from roicast.models import training
from roicast.runs import store
from roicast.runs.artefacts import read_parquet

FOLD = "roicast.evaluation.walkforward:run_fold"
DISTRIBUTION = "distribution"  # the records' space of the M6 scores
# Folds trained one after another in one process (here, or a dask task's) share one traced
# network per shape: tracing costs a small network several epochs, once per fold otherwise.
COMPILED = training.CompiledNetworks()


@dataclass
class Fold:
    """One fold's scores as records (space, predictor, metric, value) and its periods' dates."""

    fold: int
    label: str
    periods: dict
    records: list[dict]


def enabled(params: RunParams) -> bool:
    """Whether the parameters ask for a walk-forward evaluation at all."""
    return params.walk_forward_unit == "year" or params.walk_forward_folds >= 2


def fold_years(dataset: Dataset, params: RunParams) -> list[int]:
    """The test years of `walk_forward_unit='year'`: from the first year (walk_forward_first_year,
    or the first leaving walk_forward_train_years of training) to the data's last."""
    samples = sample_indices(len(dataset.features), dataset.seq_len, dataset.horizon)
    return default_test_years(dataset.target_rows(samples, "dates"), params.walk_forward_train_years,
                              params.walk_forward_first_year)


def fold_splits(dataset: Dataset, params: RunParams) -> list[dict[str, np.ndarray]]:
    """The folds over the samples of dataset.npz, oldest first."""
    samples = sample_indices(len(dataset.features), dataset.seq_len, dataset.horizon)
    gap = max(params.smooth_window, dataset.horizon)
    if params.walk_forward_unit == "year":
        rolling = params.walk_forward_train_years if params.walk_forward_train == "rolling" else None
        return year_splits(samples, dataset.target_rows(samples, "dates"), fold_years(dataset, params),
                           params.val_fraction, gap, rolling)
    return walk_forward_splits(samples, params.walk_forward_folds, params.test_fraction,
                               params.val_fraction, gap)


def fold_labels(dataset: Dataset, params: RunParams) -> list[str]:
    """What each fold is called in tables and plots: its test year, or `fold k`."""
    if params.walk_forward_unit == "year":
        return [str(year) for year in fold_years(dataset, params)]
    return [f"fold {k}" for k in range(1, params.walk_forward_folds + 1)]


@dataclass
class MemberDistributions:
    """Each network's location and scale (members × samples × assets, scaled units) on every
    training, validation and test window of one fold's dataset (`samples`, in date order): the
    networks share one traced graph, so their outputs are kept, not their weights."""

    samples: np.ndarray
    locations: np.ndarray
    scales: np.ndarray

    def mixture(self, dataset: Dataset, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The members' mixture at some of the samples (`distscore.outputs_forecaster`'s outputs)."""
        from roicast.models.network_distribution import mixture

        rows = np.searchsorted(self.samples, indices)
        if not np.array_equal(self.samples[np.minimum(rows, len(self.samples) - 1)], indices):
            raise ValueError("a window outside the fold's training, validation and test windows")
        return mixture(self.locations[:, rows], self.scales[:, rows])


def score_fold(dataset: Dataset, scalers: dict, model_output: np.ndarray, params: RunParams,
               distributions: MemberDistributions | None = None) -> dict[str, dict[str, dict]]:
    """metrics[space][predictor] of one fold's test period: 'scaled' and 'roi_pct' as 04 scores
    them, 'return' on tomorrow's raw return (`roicast.evaluation.study`); 'classification' for
    direction; with the networks' `distributions`, 'distribution' (`distribution_scores`)."""
    test_idx = dataset.test_idx
    if params.task_spec.classifies:
        scores = evaluate.score_direction(dataset, {"hybrid": model_output}, test_idx,
                                          params.direction_of)
        return {"classification": scores}
    forecasts = {"hybrid": model_output,
                 **evaluate.baseline_forecasts(dataset, scalers, test_idx, params.model_plugins)}
    scores = evaluate.score(dataset, scalers, forecasts, test_idx)
    returns = study.fold_scores(dataset, scalers, forecasts, test_idx)
    scores = {**scores, study.SPACE: returns} if returns else scores
    if distributions is not None:
        scores[DISTRIBUTION] = distribution_scores(dataset, scalers, distributions, params.horizon_days)
    return scores


def distribution_scores(dataset: Dataset, scalers: dict, distributions: MemberDistributions,
                        horizon_days: int) -> dict[str, dict[str, float]]:
    """RPS and CRPS of the networks' mixture ('hybrid') and the distributional baselines on the
    fold's non-overlapping `horizon_days` test periods; none when the fold holds no full period."""
    network = distscore.outputs_forecaster(distributions.mixture, dataset, scalers)
    section = distscore.for_run(dataset, horizon_days, {"hybrid": network})
    if isinstance(section, distscore.Unavailable):
        return {}
    record = section.record()
    return {name: {metric: record[metric][name] for metric in ("rps", "crps")
                   if pd.notna(record[metric][name])}  # uniform ranks have no CRPS
            for name in record["rps"]}


def train_members(dataset: Dataset, params: RunParams, work: Path,
                  verbose: int) -> tuple[np.ndarray, dict[str, float], MemberDistributions | None]:
    """The average test output of `walk_forward_members` networks (seeds seed, seed + 1, …),
    their mean fit seconds, epochs and best validation loss, and, for distribution networks
    with the H-day sum target, their distributions; the networks share one traced graph, with
    the other folds' networks of this process (`COMPILED`)."""
    outputs, infos, networks = [], [], COMPILED
    distributional = params.distributional and dataset.target_of == "sum"
    samples = np.sort(np.concatenate([dataset.train_idx, dataset.val_idx, dataset.test_idx]))
    locations, scales = [], []
    for k in range(params.walk_forward_members):
        network = training.Network(params, work / f"member_{k}", params.seed + k, verbose, networks)
        outputs.append(network.fit(dataset, dataset.train_idx).predict(dataset, dataset.test_idx))
        infos.append(network.result.info)
        if distributional:
            location, scale = network.predict_distribution(dataset, samples)
            locations.append(location)
            scales.append(scale)
    fit = {name: float(np.mean([info[name] for info in infos]))
           for name in ("fit_seconds", "epochs_run", "best_val_loss")}
    distributions = MemberDistributions(samples, np.array(locations), np.array(scales)) if locations else None
    return np.mean(outputs, axis=0), fit, distributions


def run_fold(prices: pd.DataFrame, params: RunParams, fold: int, label: str,
             split: dict[str, np.ndarray], verbose: int = 0, *, out_dir: Path) -> Fold:
    """Refit everything on one fold's training period, train its network(s), score its test period.

    The seconds of the whole fold (dataset, training, baselines, scores) are recorded in space
    'training' beside the networks' mean fit seconds and epochs.
    """
    start = time.perf_counter()
    dataset, scalers, info = preprocess.build_dataset(prices, params, split=split)
    with tempfile.TemporaryDirectory(dir=out_dir) as work:
        output, fit, distributions = train_members(dataset, params, Path(work), verbose)
    scores = score_fold(dataset, scalers, output, params, distributions)
    scores["training"] = {"hybrid": {**fit, "fold_seconds": time.perf_counter() - start}}
    test = info["periods"]["test"]
    records = [{"fold": fold, "label": label, "test_start": test["start"], "test_end": test["end"],
                "space": space, "predictor": predictor, "metric": metric, "value": value}
               for space, predictors in scores.items() for predictor, values in predictors.items()
               for metric, value in values.items()]
    return Fold(fold, label, info["periods"], records)


def _report(done: int, total: int, label: str, outcome: Fold | Exception) -> None:
    """One line per finished fold: its periods, the network's and the ridge's IC, its seconds."""
    if isinstance(outcome, Exception):
        print(f"[{done}/{total}] {label} FAILED: {type(outcome).__name__}: {outcome}", flush=True)
        return
    values = {(r["space"], r["predictor"], r["metric"]): r["value"] for r in outcome.records}
    ics = [f"{name} IC {values[(study.SPACE, name, 'ic_mean')]:+.4f}"
           for name in ("hybrid", "ridge") if (study.SPACE, name, "ic_mean") in values]
    rps = [f"{name} RPS {values[(DISTRIBUTION, name, 'rps')]:.4f}"
           for name in ("hybrid", distscore.REFERENCE) if (DISTRIBUTION, name, "rps") in values]
    scores = ", ".join(ics + rps)
    periods = outcome.periods
    print(f"[{done}/{total}] {label}: trained on {periods['train']['start']} to "
          f"{periods['train']['end']}, tested {periods['test']['start']} to {periods['test']['end']}"
          f"{'; ' + scores if scores else ''}; {values[('training', 'hybrid', 'fold_seconds')]:.0f} s",
          flush=True)


def run_folds(prices: pd.DataFrame, dataset: Dataset, params: RunParams, work_root: Path,
              workers: int = 0, scheduler: str | None = None,
              verbose: int = 0) -> tuple[list[Fold], dict[str, str]]:
    """Every fold, in fold order, and the error of each fold that failed (by label).

    On the cluster at `scheduler` if given, else on a LocalCluster of `workers` processes when
    `workers` ≥ 2, else one after another in this process (`compute.units`).
    """
    jobs = {label: (fold, label, split, verbose) for fold, (label, split) in enumerate(
        zip(fold_labels(dataset, params), fold_splits(dataset, params), strict=True), start=1)}
    folds, failed = [], {}
    for finished, done in enumerate(run_units(FOLD, (prices, params), jobs, scheduler, workers, work_root),
                                    start=1):
        _report(finished, len(jobs), done.key, done.value)
        if done.failed:
            failed[done.key] = f"{type(done.value).__name__}: {done.value}"
        else:
            folds.append(done.value)
    return sorted(folds, key=lambda fold: fold.fold), failed


def as_frame(folds: list[Fold], failed: dict[str, str]) -> pd.DataFrame:
    """One row per fold, space, predictor and metric; the failed folds' errors in attrs['failed']."""
    frame = pd.DataFrame.from_records([record for fold in folds for record in fold.records])
    frame.attrs["failed"] = dict(failed)
    return frame


def walk_forward(prices: pd.DataFrame, dataset: Dataset, params: RunParams, work_root: Path,
                 verbose: int = 2, workers: int = 0, scheduler: str | None = None) -> pd.DataFrame:
    """Train and score one network (or an average of several) per fold; one row per fold, space,
    predictor and metric. Raises RoicastError when every fold failed."""
    folds, failed = run_folds(prices, dataset, params, work_root, workers, scheduler, verbose)
    if not folds:
        raise RoicastError("Every walk-forward fold failed: "
                           + "; ".join(f"{label}: {error}" for label, error in failed.items()))
    return as_frame(folds, failed)


def summarise(folds: pd.DataFrame) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """summary[space][predictor][metric] = {"mean", "std"} across folds (std with ddof 1)."""
    stats = folds.groupby(["space", "predictor", "metric"])["value"].agg(["mean", "std"])
    summary: dict = {}
    for (space, predictor, metric), row in stats.iterrows():
        summary.setdefault(space, {}).setdefault(predictor, {})[metric] = {
            "mean": float(row["mean"]), "std": float(row["std"])}
    return summary


def record(folds: pd.DataFrame) -> dict:
    """metrics.json's `walk_forward` part: every fold's scores, their mean and spread, the
    failed folds' errors and, where tomorrow's return was scored, the study's scores across folds."""
    part = {"folds": folds.to_dict(orient="records"), "summary": summarise(folds),
            "failed": folds.attrs.get("failed", {})}
    if study.SPACE in set(folds["space"]):
        part["across_folds"] = study.overall(folds).to_dict(orient="index")
        part["verdict"] = study.verdict(folds)
    return part


def summary_table(folds: pd.DataFrame, space: str, metric: str) -> pd.DataFrame:
    """One row per predictor: `metric` in each fold, then its mean and standard deviation."""
    chosen = folds[(folds["space"] == space) & (folds["metric"] == metric)]
    table = chosen.pivot(index="predictor", columns="fold", values="value")
    labels = chosen.drop_duplicates("fold").set_index("fold")["label"]
    table.columns = [labels[fold] for fold in table.columns]
    table["mean"], table["std"] = table.mean(axis=1), table.std(axis=1, ddof=1)
    return table.sort_values("mean", ascending=False)


@dataclass
class Section:
    """04_evaluate's walk-forward section: the folds' scores, or why there are none."""

    params: RunParams
    folds: pd.DataFrame | None

    def show(self) -> None:
        """The headline metric per fold, its figure and, with tomorrow's return scored (yearly
        folds), the study's scores across years, the IC by year and the verdict."""
        from IPython.display import display

        if self.folds is None:
            print("walk_forward_folds = 0 and walk_forward_unit = 'block': walk-forward evaluation is off.")
            return
        display(summary_table(self.folds, *self.params.task_spec.headline).round(4))
        plots.plot_walk_forward(self.folds, *self.params.task_spec.headline)
        if study.SPACE in set(self.folds["space"]):
            display(study.overall(self.folds).round(4))
            plots.plot_ic_by_year(study.ic_by_year(self.folds))
            print(study.verdict(self.folds))
        if DISTRIBUTION in set(self.folds["space"]):
            print("Mean RPS of the quintile probabilities per fold (lower is better; `uniform` is no view)")
            display(summary_table(self.folds, DISTRIBUTION, "rps").sort_values("mean").round(4))

    def record(self) -> dict | None:
        """metrics.json's `walk_forward` part, or None when it did not run."""
        return None if self.folds is None else record(self.folds)


def section(run_dir: Path, dataset: Dataset, params: RunParams, work_root: Path,
            scheduler: str | None = None) -> Section:
    """Run the walk-forward evaluation the parameters ask for, on the run's prices: folds as dask
    tasks on the cluster at `scheduler` (the runner's `--scheduler`), else on a LocalCluster of one
    worker per core (in this process with a GPU or one core), as ensemble members train."""
    if not enabled(params):
        return Section(params, None)
    prices = read_parquet(store.artefact_path(run_dir, "04_evaluate", store.PRICES))
    workers = 0 if scheduler else local_workers(len(fold_labels(dataset, params)))
    return Section(params, walk_forward(prices, dataset, params, work_root, workers=workers,
                                        scheduler=scheduler))
