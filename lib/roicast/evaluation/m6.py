"""Score distributional forecasts and decisions as the M6 competition did.

M6 (2022–23) asked, each month, for every asset's probabilities of landing in each quintile
of the universe's 4-week returns, scored by the Ranked Probability Score (RPS: uniform
probabilities score exactly 0.16), and for portfolio weights with Σ|w| between 0.25 and 1,
judged by their information ratio. `evaluate` runs one forecaster (`roicast.models.distribution`)
over non-overlapping periods; `summary` gives its RPS, CRPS, interval coverage and decision;
`submission` writes the M6 file for the days after a price table.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scoringrules as sr
from scipy import stats

from roicast.errors import ParameterError
from roicast.models import distribution
from roicast.models.distribution import BINS, Forecast
from roicast.runs.artefacts import atomic_path

LEVELS = (0.5, 0.8, 0.9, 0.95)
TERCILES = ("low", "mid", "high")
Forecaster = Callable[[pd.DataFrame, int], Forecast]


def rps(probabilities: np.ndarray, outcome_bins: np.ndarray) -> np.ndarray:
    """M6's RPS: the mean over assets (second last axis) of (1/K) Σₖ (cumulative forecast
    probability up to bin k − cumulative outcome)²; scoringrules' RPS is the sum over k."""
    bins = probabilities.shape[-1]
    outcome = np.eye(bins)[outcome_bins]
    return (sr.rps_score(outcome, probabilities, onehot=True) / bins).mean(axis=-1)


def covered(realised: np.ndarray, mean: np.ndarray, scale: np.ndarray, level: float) -> np.ndarray:
    """Whether each outcome lies in the Gaussian's central `level` interval."""
    return np.abs(realised - mean) <= stats.norm.ppf(0.5 + level / 2) * scale


def coverage(realised: np.ndarray, mean: np.ndarray, scale: np.ndarray,
             levels: tuple[float, ...] = LEVELS) -> pd.DataFrame:
    """Share of outcomes inside each central interval, over all forecasts and by tercile of the
    forecast scale (pooled over periods and assets): is a wide forecast as honest as a narrow?"""
    realised, mean, scale = (np.ravel(a) for a in (realised, mean, scale))
    if not np.isfinite(scale).all():
        return pd.DataFrame(np.nan, index=["all", *TERCILES], columns=list(levels))
    tercile = pd.qcut(scale, 3, labels=list(TERCILES))
    table = {}
    for level in levels:
        inside = pd.Series(covered(realised, mean, scale, level))
        table[level] = pd.concat([pd.Series({"all": inside.mean()}),
                                  inside.groupby(tercile, observed=False).mean()])
    return pd.DataFrame(table)


def paired_t(losses: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Paired t-test of per-period losses against a reference's on the same periods; a positive
    t means higher loss (worse) than the reference. Periods do not overlap, so no HAC term."""
    difference = np.asarray(losses, float) - np.asarray(reference, float)
    if not np.isfinite(difference).all() or np.allclose(difference, 0):
        return {"t": float("nan"), "p_value": float("nan"), "mean_difference": float(np.mean(difference))}
    result = stats.ttest_rel(losses, reference)
    return {"t": float(result.statistic), "p_value": float(result.pvalue),
            "mean_difference": float(difference.mean())}


def decision_weights(forecast: Forecast, gross: float = 1.0) -> np.ndarray:
    """M6 weights from a forecast: long-only inverse volatility with Σ|w| = `gross` (0.25–1),
    equal weights without a view. One line of numpy; skfolio's InverseVolatility does the same
    but estimates the volatility from past returns itself, so it cannot take a forecast's."""
    if not 0.25 <= gross <= 1:
        raise ParameterError(f"gross={gross}: M6 asks for a sum of absolute weights between 0.25 and 1")
    inverse = 1 / forecast.scale
    if not np.isfinite(inverse).all():
        inverse = np.ones(len(forecast.assets))
    return gross * inverse / inverse.sum()


def portfolio_log_returns(weights: np.ndarray, realised: np.ndarray) -> np.ndarray:
    """Each period's log return of the portfolio bought at its start (assets' log returns in)."""
    return np.log1p((weights * np.expm1(realised)).sum(axis=-1))


def information_ratio(period_log_returns: np.ndarray) -> float:
    """Mean over standard deviation of the portfolio's period log returns (M6's IR, not annualised)."""
    return float(np.mean(period_log_returns) / np.std(period_log_returns, ddof=1))


def max_drawdown(period_log_returns: np.ndarray) -> float:
    """The largest fall of wealth from its running peak (a negative share), from a start of 1."""
    wealth = np.exp(np.concatenate([[0.0], np.cumsum(period_log_returns)]))
    return float((wealth / np.maximum.accumulate(wealth) - 1).min())


@dataclass(frozen=True)
class Evaluation:
    """One forecaster over non-overlapping periods: arrays are periods × assets (× bins)."""

    periods: pd.DataFrame
    assets: list[str]
    realised: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    probabilities: np.ndarray
    weights: np.ndarray

    @property
    def rps(self) -> np.ndarray:
        """Per-period RPS against the realised ranks."""
        return rps(self.probabilities, distribution.rank_bins(self.realised, self.probabilities.shape[-1]))

    @property
    def crps(self) -> np.ndarray:
        """Per-period mean over assets of the Gaussian's CRPS (NaN without a view)."""
        return sr.crps_normal(self.realised, self.mean, self.scale).mean(axis=1)

    @property
    def portfolio(self) -> np.ndarray:
        """Per-period log return of the decision's portfolio."""
        return portfolio_log_returns(self.weights, self.realised)


def evaluate(prices: pd.DataFrame, forecaster: Forecaster, horizon_days: int = 20,
             start: str | None = None, end: str | None = None, draws: int = 10_000,
             seed: int = 0, bins: int = BINS) -> Evaluation:
    """Forecast every non-overlapping period in [start, end] from the returns before it.

    Each period's Monte Carlo draws come from a generator seeded by (seed, period number), so
    two forecasters share random numbers period by period and the result does not depend on
    which periods are run.
    """
    returns = distribution.log_returns(prices)
    table = distribution.periods(returns.index, horizon_days, start, end)
    forecasts = [forecaster(returns.iloc[:position], horizon_days) for position in table["position"]]
    return score_forecasts(returns, table, forecasts, horizon_days, draws, seed, bins)


def score_forecasts(returns: pd.DataFrame, table: pd.DataFrame, forecasts: list[Forecast],
                    horizon_days: int, draws: int = 10_000, seed: int = 0, bins: int = BINS) -> Evaluation:
    """Score one forecast per period of `table` (`distribution.periods` of the daily log
    `returns`) against the returns realised over its `horizon_days`: what `evaluate` does once
    its forecaster has forecast, for forecasts made some other way (a network's)."""
    values = returns.to_numpy()
    realised, mean, scale, probabilities, weights = [], [], [], [], []
    for number, (position, forecast) in enumerate(zip(table["position"], forecasts, strict=True)):
        realised.append(values[position:position + horizon_days].sum(axis=0))
        mean.append(forecast.mean)
        scale.append(forecast.scale)
        probabilities.append(distribution.quintile_probabilities(
            forecast, np.random.default_rng([seed, number]), draws, bins))
        weights.append(decision_weights(forecast))
    return Evaluation(table, list(returns.columns), *map(np.array, (realised, mean, scale,
                                                                     probabilities, weights)))


def summary(evaluation: Evaluation, reference: Evaluation | None = None) -> dict:
    """Mean RPS and CRPS, interval coverage, the decision's IR and drawdown, and paired t-tests of
    RPS and CRPS against `reference` (the covariance baseline) on the same periods."""
    result = {
        "periods": len(evaluation.periods),
        "rps": float(evaluation.rps.mean()),
        "crps": float(evaluation.crps.mean()),
        "coverage": coverage(evaluation.realised, evaluation.mean, evaluation.scale).to_dict(),
        "ir": information_ratio(evaluation.portfolio),
        "max_drawdown": max_drawdown(evaluation.portfolio),
    }
    if reference is not None:
        result["rps_vs_reference"] = paired_t(evaluation.rps, reference.rps)
        result["crps_vs_reference"] = paired_t(evaluation.crps, reference.crps)
    return result


def submission(prices: pd.DataFrame, forecaster: Forecaster = distribution.trailing_covariance,
               horizon_days: int = 20, draws: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """The M6 file for the `horizon_days` after the table's last day: one row per asset,
    `ID,Rank1..Rank5,Decision`, from every return the table holds."""
    forecast = forecaster(distribution.log_returns(prices), horizon_days)
    probabilities = distribution.quintile_probabilities(forecast, np.random.default_rng(seed), draws)
    frame = pd.DataFrame(probabilities, columns=[f"Rank{k + 1}" for k in range(BINS)])
    frame.insert(0, "ID", forecast.assets)
    frame["Decision"] = decision_weights(forecast)
    return frame


def write_submission(frame: pd.DataFrame, path: Path) -> Path:
    """Write an M6 frame as CSV, whole or not at all."""
    with atomic_path(Path(path)) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)
