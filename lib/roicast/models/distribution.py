"""Forecast each asset's distribution of its next H-day log return, and of its rank.

The mean of a return is not forecastable from its own past (DESIGN.md), but its spread is:
a volatile stock lands in the extreme quintiles of the universe more often. These are the
distributional baselines any model must beat, each a zero-mean Gaussian of the H-day sums
of daily log returns (or no view at all), made from returns strictly before the period:

- `uniform`: no view; every quintile 1/5 (its share of the assets when 5 does not divide them).
- `trailing_covariance`: the covariance of the last `window` daily returns, times H.
- `garch`: GARCH(1,1) variances per asset (the `arch` package), summed over the H days,
  with the trailing correlation.

`quintile_probabilities` turns a forecast into M6's rank probabilities by Monte Carlo.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf

from roicast.errors import DataError, ParameterError

BINS = 5  # M6 scores quintiles


@dataclass(frozen=True)
class Forecast:
    """A joint Gaussian of the assets' H-day log returns; `covariance` None means no view."""

    assets: list[str]
    mean: np.ndarray
    covariance: np.ndarray | None

    @property
    def scale(self) -> np.ndarray:
        """Each asset's standard deviation (NaN without a view)."""
        if self.covariance is None:
            return np.full(len(self.assets), np.nan)
        return np.sqrt(np.diag(self.covariance))


def log_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Daily log returns of a complete table of positive prices (dates × assets)."""
    if prices.isna().any().any() or (prices <= 0).any().any():
        bad = prices.columns[prices.isna().any() | (prices <= 0).any()].tolist()
        raise DataError(f"prices of {bad} are missing or not positive; "
                        "pass a complete table of positive prices (drop those assets or dates)")
    return np.log(prices).diff().iloc[1:]


def periods(dates: pd.DatetimeIndex, horizon_days: int = 20, start: str | None = None,
            end: str | None = None) -> pd.DataFrame:
    """Consecutive, non-overlapping periods of `horizon_days` returns within [start, end].

    `dates` are those of the daily returns. Each row gives `position`, the index of the
    period's first return (a forecast may use returns before it only), `asof`, the date of
    the last return it may use, and the period's `first` and `last` dates.
    """
    if not 1 <= horizon_days <= 60:
        raise ParameterError(f"horizon_days={horizon_days}: choose 1 to 60 (M6 uses 20)")
    dates = pd.DatetimeIndex(dates)
    inside = np.flatnonzero((dates >= pd.Timestamp(start or dates[0]))
                            & (dates <= pd.Timestamp(end or dates[-1])))
    if inside.size < horizon_days or inside[0] == 0:
        raise DataError(f"no full {horizon_days}-day period with history before it between "
                        f"{start} and {end}; widen the dates or pass more history")
    first = np.arange(inside[0], inside[-1] - horizon_days + 2, horizon_days)
    return pd.DataFrame({"position": first, "asof": dates[first - 1], "first": dates[first],
                         "last": dates[first + horizon_days - 1]})


def _window(history: pd.DataFrame, window: int) -> np.ndarray:
    if len(history) < window:
        raise DataError(f"{len(history)} days of returns before the period, {window} needed; "
                        "start the evaluation later or shorten the window")
    return history.to_numpy()[-window:]


def uniform(history: pd.DataFrame, horizon_days: int) -> Forecast:
    """No view: the reference M6 scores against (RPS 0.16)."""
    return Forecast(list(history.columns), np.zeros(history.shape[1]), None)


def trailing_covariance(history: pd.DataFrame, horizon_days: int, window: int = 250,
                        shrink: bool = False) -> Forecast:
    """Zero mean, the covariance of the last `window` daily returns times H (Ledoit–Wolf if
    `shrink`): daily returns treated as independent over the period."""
    recent = _window(history, window)
    daily = LedoitWolf().fit(recent).covariance_ if shrink else np.cov(recent, rowvar=False)
    return Forecast(list(history.columns), np.zeros(recent.shape[1]), daily * horizon_days)


def garch_variance(returns: np.ndarray, horizon_days: int) -> float:
    """The sum of a zero-mean GARCH(1,1)'s daily variance forecasts over the next H days.

    Fitted in percent (the scale `arch` optimises well); when the fit does not converge, the
    sample variance times H stands in rather than parameters of a failed search. `arch` (and the
    statsmodels it loads) is imported here, by the one baseline that needs it, not by every 04.
    """
    from arch import arch_model

    model = arch_model(100 * returns, mean="Zero", vol="GARCH", p=1, q=1, rescale=False)
    fitted = model.fit(disp="off", show_warning=False)
    if fitted.convergence_flag != 0:
        return float(np.var(returns) * horizon_days)
    variance = fitted.forecast(horizon=horizon_days, reindex=False).variance.to_numpy()[-1]
    return float(variance.sum() / 1e4)


def garch(history: pd.DataFrame, horizon_days: int, window: int = 1000,
          correlation_window: int = 250) -> Forecast:
    """GARCH(1,1) variances per asset on the last `window` days, with the correlation of the
    last `correlation_window` days (GARCH needs a longer history than a covariance does)."""
    recent = _window(history, window)
    variances = np.array([garch_variance(recent[:, i], horizon_days) for i in range(recent.shape[1])])
    correlation = np.corrcoef(_window(history, correlation_window), rowvar=False)
    scale = np.sqrt(variances)
    return Forecast(list(history.columns), np.zeros(recent.shape[1]),
                    correlation * np.outer(scale, scale))


def rank_bins(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """The bin (0 to bins-1) of each value's rank along the last axis, lowest first; ties by
    position, so every bin holds N/bins assets as in M6."""
    ranks = np.argsort(np.argsort(values, axis=-1, kind="stable"), axis=-1, kind="stable")
    return ranks * bins // values.shape[-1]


def quintile_probabilities(forecast: Forecast, rng: np.random.Generator, draws: int = 10_000,
                           bins: int = BINS) -> np.ndarray:
    """Each asset's probability (assets × bins) of landing in each bin of the universe's
    ranked H-day returns, counted over `draws` joint Gaussian draws. Without a view, each bin's
    share of the assets: exactly 1/bins when the bins divide the assets (M6's 0.2 for 100),
    else the bins' unequal sizes (of 6 assets, the lowest bin holds 2)."""
    n = len(forecast.assets)
    if forecast.covariance is None:
        shares = np.bincount(rank_bins(np.arange(n), bins), minlength=bins) / n
        return np.broadcast_to(shares, (n, bins)).copy()
    sample = rng.multivariate_normal(forecast.mean, forecast.covariance, size=draws, method="cholesky")
    cells = rank_bins(sample, bins) + bins * np.arange(n)
    return np.bincount(cells.ravel(), minlength=n * bins).reshape(n, bins) / draws
