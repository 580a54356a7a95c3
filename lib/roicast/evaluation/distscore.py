"""04's "Distribution and ranks": every predictor's distribution of the next `horizon_days`' log
returns, scored M6's way over the non-overlapping periods of the test split.

The distributional baselines are ordinary predictors here, beside any network that forecasts a
distribution (`extra`):

- `uniform`: no view (RPS 0.16).
- `covariance`: zero mean and the trailing covariance of daily returns times H, its window
  chosen on the validation split's periods (lowest RPS), never on the test split's.
- `ridge_scale`: the mean of a ridge on the run's windows, fitted on the training windows' H-day
  sums (none reaching past the training period), with the covariance baseline's scale.
- `garch` when asked: GARCH(1,1) variances per asset (slow: one fit per asset and period).

A forecast for a period starting on the dataset's daily row s uses returns before s only; a
network's is made from the window that ends on row s - 1, the sample index s. Returns are in
natural log units here (the dataset's are in percent).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from roicast import plots
from roicast.errors import DataError
from roicast.evaluation import m6
from roicast.features.dataset import Dataset
from roicast.models import distribution
from roicast.models.baselines import SharedRidge
from roicast.models.distribution import Forecast

WINDOWS = (20, 60, 120, 250, 500)  # trailing covariance windows tried on the validation split
REFERENCE = "covariance"  # what the paired tests compare against, as the targets do
DRAWS = 10_000
SampleForecaster = Callable[[np.ndarray], list[Forecast]]  # sample indices -> one Forecast each


def daily_returns(dataset: Dataset) -> pd.DataFrame:
    """The dataset's unclipped daily log returns in natural units, dates × assets."""
    return pd.DataFrame(np.asarray(dataset.returns_pct) / 100, index=pd.to_datetime(dataset.dates),
                        columns=[str(asset) for asset in dataset.assets])


def period_days(dataset: Dataset, indices: np.ndarray) -> tuple[int, int]:
    """The first and last daily row that the targets of `indices` cover."""
    indices = np.asarray(indices)
    return (int(indices.min()) + dataset.horizon - dataset.horizon_days,
            int(indices.max()) + dataset.horizon - 1)


def periods_of(dataset: Dataset, period: str, horizon_days: int) -> pd.DataFrame:
    """Consecutive non-overlapping `horizon_days` periods inside a split's target days
    (`distribution.periods`; `position` is the daily row each starts on)."""
    first, last = period_days(dataset, dataset.indices(period))
    dates = pd.to_datetime(dataset.dates)
    try:
        return distribution.periods(dates, horizon_days, start=dates[first], end=dates[last])
    except DataError:
        raise DataError(f"The {period} split's {last - first + 1} days hold no full period of "
                        f"horizon_days={horizon_days}; choose a shorter horizon_days or more data") from None


def choose_window(returns: pd.DataFrame, table: pd.DataFrame, horizon_days: int,
                  windows: tuple[int, ...] = WINDOWS) -> tuple[int, dict[int, float]]:
    """The trailing covariance window with the lowest mean RPS over the periods of `table` (the
    validation split's), among those with that much history before its first period and more
    days than assets (a shorter one's covariance is singular); ties go to the longer window.
    Returns it and every tried window's RPS."""
    history = int(table["position"].min())
    tried = [w for w in windows if returns.shape[1] < w <= history]
    if not tried:
        raise DataError(f"{history} days of returns before the validation split: too few for a "
                        f"trailing covariance of {returns.shape[1]} assets from {WINDOWS}; use more history")
    scores = {}
    for window in tried:
        forecasts = [distribution.trailing_covariance(returns.iloc[:p], horizon_days, window)
                     for p in table["position"]]
        scores[window] = float(m6.score_forecasts(returns, table, forecasts, horizon_days).rps.mean())
    best = min(scores.values())
    return max(w for w, score in scores.items() if score == best), scores


def forward_sums(values: np.ndarray, horizon_days: int) -> np.ndarray:
    """Row r: the sum of rows r .. r + H - 1 (NaN where fewer remain)."""
    cumulative = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    sums = np.full(values.shape, np.nan)
    sums[:len(values) - horizon_days + 1] = cumulative[horizon_days:] - cumulative[:-horizon_days]
    return sums


def ridge_means(dataset: Dataset, starts: np.ndarray, horizon_days: int) -> np.ndarray:
    """The shared ridge's forecast of each period's H-day log return (periods × assets), fitted on
    the training windows whose H days all lie in the training period, every (H/4)th of them:
    neighbours share all but a few of their H days, and a quarter of the fit's cost is 04's."""
    month = dataset.replace(target=forward_sums(np.asarray(dataset.returns_pct), horizon_days), horizon=1)
    last_day = period_days(dataset, dataset.train_idx)[1]
    train = dataset.train_idx[dataset.train_idx + horizon_days - 1 <= last_day][::max(1, horizon_days // 4)]
    return SharedRidge().fit(month, train).predict(month, np.asarray(starts)) / 100


def pit(evaluation: m6.Evaluation) -> np.ndarray:
    """The Gaussian forecast CDF at each realised return (periods × assets); NaN without a view."""
    return stats.norm.cdf(evaluation.realised, evaluation.mean, evaluation.scale)


@dataclass
class Section:
    """The scores of every distributional predictor on the same test periods."""

    horizon_days: int
    window: int  # the covariance baseline's, chosen on validation
    window_rps: dict[int, float]  # every tried window's validation RPS
    evaluations: dict[str, m6.Evaluation] = field(default_factory=dict)

    def summaries(self) -> dict[str, dict]:
        reference = self.evaluations[REFERENCE]
        return {name: m6.summary(e, None if name == REFERENCE else reference)
                for name, e in self.evaluations.items()}

    def record(self) -> dict:
        """metrics.json's `distribution`: RPS and CRPS per predictor (`uniform` included), and
        each predictor's coverage, IR, drawdown and paired tests against the covariance baseline."""
        summaries = self.summaries()
        table = self.evaluations[REFERENCE].periods
        return {"horizon_days": self.horizon_days, "periods": len(table),
                "first": table["first"].iloc[0], "last": table["last"].iloc[-1],
                "covariance_window": self.window, "covariance_window_val_rps": self.window_rps,
                "rps": {name: s["rps"] for name, s in summaries.items()},
                "crps": {name: s["crps"] for name, s in summaries.items()},
                "predictors": summaries}

    def table(self) -> pd.DataFrame:
        """One row per predictor: mean RPS and CRPS, the 90 % interval's coverage overall and by
        volatility tercile, the decision's IR and drawdown, and t against the covariance baseline."""
        rows = {}
        for name, s in self.summaries().items():
            coverage = s["coverage"][0.9]
            rows[name] = {"rps": s["rps"], "crps": s["crps"], "cover90": coverage["all"],
                          **{f"cover90_{t}": coverage[t] for t in m6.TERCILES},
                          "ir": s["ir"], "max_drawdown": s["max_drawdown"],
                          "t_rps_vs_covariance": s.get("rps_vs_reference", {}).get("t", np.nan),
                          "t_crps_vs_covariance": s.get("crps_vs_reference", {}).get("t", np.nan)}
        return pd.DataFrame(rows).T

    def headline(self) -> str:
        """The predictor read first: a network's distribution when present, else the covariance."""
        return next((name for name in ("ensemble", "hybrid") if name in self.evaluations), REFERENCE)

    def plot_calibration(self) -> Figure:
        """PIT histograms of every predictor with a scale."""
        return plots.plot_pit({name: pit(e) for name, e in self.evaluations.items()
                               if np.isfinite(e.scale).all()})

    def plot_ranks(self) -> Figure:
        """The headline predictor's quintile probabilities of the last test period, realised
        quintiles boxed."""
        name = self.headline()
        e = self.evaluations[name]
        bins = e.probabilities.shape[-1]
        probabilities = pd.DataFrame(e.probabilities[-1], index=e.assets,
                                     columns=[f"Q{k + 1}" for k in range(bins)])
        realised = pd.Series(distribution.rank_bins(e.realised[-1], bins), index=e.assets)
        last = e.periods.iloc[-1]
        return plots.plot_rank_probabilities(
            probabilities, realised, f"{name}: quintile probabilities, {last['first']:%Y-%m-%d} to "
            f"{last['last']:%Y-%m-%d}")


def section(dataset: Dataset, horizon_days: int, extra: dict[str, SampleForecaster] | None = None,
            garch: bool = False, draws: int = DRAWS, seed: int = 0) -> Section:
    """Every distributional predictor scored on the test split's `horizon_days` periods (the
    baselines, `extra`'s networks and, with `garch`, GARCH(1,1)), on the same periods and Monte
    Carlo draws."""
    returns = daily_returns(dataset)
    window, window_rps = choose_window(returns, periods_of(dataset, "val", horizon_days), horizon_days)
    table = periods_of(dataset, "test", horizon_days)
    starts = table["position"].to_numpy()
    histories = [returns.iloc[:p] for p in starts]
    covariance = [distribution.trailing_covariance(h, horizon_days, window) for h in histories]
    means = ridge_means(dataset, starts, horizon_days)
    forecasts = {"uniform": [distribution.uniform(h, horizon_days) for h in histories],
                 REFERENCE: covariance,
                 "ridge_scale": [Forecast(f.assets, mean, f.covariance) for f, mean in zip(covariance, means,
                                                                                           strict=True)]}
    if garch:
        fit = partial(distribution.garch, window=min(1000, int(starts[0])), correlation_window=window)
        forecasts["garch"] = [fit(h, horizon_days) for h in histories]
    for name, forecaster in (extra or {}).items():
        forecasts[name] = forecaster(starts)
    evaluations = {name: m6.score_forecasts(returns, table, made, horizon_days, draws, seed)
                   for name, made in forecasts.items()}
    return Section(horizon_days, window, window_rps, evaluations)


@dataclass
class Unavailable:
    """The section when the run's splits hold no full period: says why, wherever it is read."""

    reason: str

    def _say(self) -> None:
        print(f"No distribution scores: {self.reason}.")

    def record(self) -> dict:
        return {"skipped": self.reason}

    def table(self) -> None:
        self._say()

    def plot_calibration(self) -> None:
        self._say()

    def plot_ranks(self) -> None:
        self._say()


def for_run(dataset: Dataset, horizon_days: int, extra: dict[str, SampleForecaster] | None = None,
            garch: bool = False) -> Section | Unavailable:
    """`section`, or why a run's data cannot give one (a test or validation split shorter than
    `horizon_days`, too little history for a covariance)."""
    try:
        return section(dataset, horizon_days, extra, garch)
    except DataError as exc:
        return Unavailable(str(exc).split(";")[0])


def network_forecaster(models: list, train: Dataset, scalers: dict,
                       on: Dataset | None = None) -> SampleForecaster:
    """A run's distribution network(s) (output='distribution', target='sum'; several: their
    mixture) as a predictor of this module: the forecast at sample s of `on` (default: `train`,
    the run's dataset; 06 passes the new prices'), as `outputs_forecaster` makes it
    (`models.network_distribution`, imported here: it loads Keras)."""
    from roicast.models import network_distribution as nd

    return outputs_forecaster(lambda dataset, indices: nd.dataset_distribution(models, dataset, indices),
                              train, scalers, on)


def outputs_forecaster(outputs: Callable[[Dataset, np.ndarray], tuple[np.ndarray, np.ndarray]],
                       train: Dataset, scalers: dict, on: Dataset | None = None) -> SampleForecaster:
    """A distribution network's outputs, `outputs(dataset, indices)` → (location, scale) in
    scaled units, as a predictor of this module: in log units, correlated across assets as the
    standardised training residuals are, calibrated on the validation windows."""
    from roicast.models import network_distribution as nd

    location, scale = outputs(train, train.train_idx)
    correlation = nd.residual_correlation(train.target_rows(train.train_idx), location, scale)
    calibration = nd.calibration_on(train.target_rows(train.val_idx), *outputs(train, train.val_idx), scalers)
    assets = [str(asset) for asset in train.assets]
    on = train if on is None else on

    def forecasts(indices: np.ndarray) -> list[Forecast]:
        locations, scales = outputs(on, indices)
        return [nd.to_forecast(assets, location, scale, correlation, scalers, calibration)
                for location, scale in zip(locations, scales, strict=True)]

    return forecasts


def network_predictors(model, dataset: Dataset, scalers: dict,
                       distributional: bool) -> dict[str, SampleForecaster]:
    """04's network among the predictors when it forecasts the distribution of the H-day sum
    (output='distribution' with target='sum'); none otherwise, and the section says so by its absence."""
    if not distributional or dataset.target_of != "sum":
        return {}
    return {"hybrid": network_forecaster([model], dataset, scalers)}
