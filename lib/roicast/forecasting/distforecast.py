"""06's distribution of the days after asof: quantiles, quintile probabilities, decision weights
and the M6 file.

The forecaster is the best distributional predictor the run has, named in the output, never
chosen silently: a network that forecasts a distribution (`extra`, in 04's shape), else the
covariance baseline with the trailing window that scored best on the run's validation split
(`distscore.choose_window`, the same choice 04 makes).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from roicast.errors import DataError
from roicast.evaluation import distscore, m6
from roicast.features.dataset import Dataset
from roicast.models import distribution
from roicast.models.distribution import BINS, Forecast

QUANTILES = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)
M6_COLUMNS = ["ID", *(f"Rank{k + 1}" for k in range(BINS)), "Decision"]


@dataclass
class Result:
    table: pd.DataFrame  # per asset and horizon: mean, quantiles (log return %), Rank1..5, decision
    m6: pd.DataFrame  # the M6 file for horizon_days: ID, Rank1..Rank5, Decision
    info: dict  # forecast.json's `distribution`: predictor, why, window, horizons


def quantile_table(forecast: Forecast, quantiles: tuple[float, ...] = QUANTILES) -> pd.DataFrame:
    """Each asset's Gaussian quantiles of its H-day log return, in percent."""
    values = stats.norm.ppf(np.asarray(quantiles))[None, :] * forecast.scale[:, None] + forecast.mean[:, None]
    return pd.DataFrame(100 * values, index=forecast.assets,
                        columns=[f"q{round(100 * q):02d}_pct" for q in quantiles])


def horizon_rows(forecast: Forecast, horizon: int, draws: int, seed: int) -> pd.DataFrame:
    """One row per asset for one horizon: mean and quantiles (%), quintile probabilities, weight."""
    rng = np.random.default_rng([seed, horizon])
    probabilities = distribution.quintile_probabilities(forecast, rng, draws)
    frame = quantile_table(forecast)
    frame.insert(0, "mean_pct", 100 * forecast.mean)
    frame[[f"Rank{k + 1}" for k in range(BINS)]] = probabilities
    frame["decision"] = m6.decision_weights(forecast)
    frame.insert(0, "horizon_days", horizon)
    return frame.rename_axis("asset").reset_index()


def network_of(predictors: dict, run_dataset: Dataset, latest: Dataset, scalers: dict,
               distributional: bool) -> tuple[str, distscore.SampleForecaster] | None:
    """06's distribution network and its name: the ensemble's members mixed when 05 ran, else 03's
    network; None unless it forecasts the H-day sum (output='distribution', target='sum')."""
    if not distributional or run_dataset.target_of != "sum":
        return None
    if "ensemble" in predictors:
        return "ensemble", distscore.network_forecaster(list(predictors["ensemble"].members.networks),
                                                        run_dataset, scalers, on=latest)
    return "hybrid", distscore.network_forecaster([predictors["hybrid"]], run_dataset, scalers, on=latest)


def make(run_dataset: Dataset, latest: Dataset, horizon_days: int, steps: int,
         network: tuple[str, distscore.SampleForecaster] | None = None, draws: int = distscore.DRAWS,
         seed: int = 0) -> Result:
    """The distribution of every asset's log return over each of the next `steps` days and over
    `horizon_days` (the M6 file's), from the returns of `latest` (the new prices up to asof).

    `network` (its name and forecaster, `network_of`) forecasts `horizon_days` from the window
    ending on asof when the run has one; the covariance baseline forecasts every other horizon.
    """
    returns = distscore.daily_returns(latest)
    try:
        window, scores = distscore.choose_window(
            distscore.daily_returns(run_dataset), distscore.periods_of(run_dataset, "val", horizon_days),
            horizon_days)
        why = "the window with the lowest RPS on the run's validation split"
    except DataError:
        window, scores = min(len(returns), 250), {}
        why = "the run's validation split holds no full period to choose it on: 250 days or all there are"
    if window <= returns.shape[1]:
        raise DataError(f"{len(returns)} days of returns up to asof: too few for the covariance of "
                        f"{returns.shape[1]} assets; use more history")
    horizons = sorted({*range(1, steps + 1), horizon_days})
    covariance = {h: distribution.trailing_covariance(returns, h, window) for h in horizons}
    if network is not None:
        predictor, forecaster = network
        covariance[horizon_days] = forecaster(np.array([len(latest.features)]))[0]
        note = (f"horizon {horizon_days} (the M6 file): {predictor}'s distribution; other horizons: the "
                f"covariance baseline ({window}-day window, {why})")
    else:
        predictor = "covariance"
        note = (f"the covariance baseline (zero mean, the last {window} days' covariance × days; {why}): "
                "this run's network forecasts no distribution")
    table = pd.concat([horizon_rows(covariance[h], h, draws, seed) for h in horizons], ignore_index=True)
    month = table[table["horizon_days"] == horizon_days]
    frame = month[["asset", *M6_COLUMNS[1:-1], "decision"]].set_axis(M6_COLUMNS, axis=1)
    info = {"predictor": predictor, "note": note, "covariance_window": window,
            "covariance_window_val_rps": scores, "horizon_days": horizon_days, "horizons": horizons,
            "gross_weight": float(frame["Decision"].abs().sum())}
    return Result(table, frame.reset_index(drop=True), info)
