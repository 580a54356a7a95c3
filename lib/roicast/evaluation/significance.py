"""Is a difference real? Tests that turn two error series into a p-value.

Errors of neighbouring days are correlated (the smoothed target shares days), so the
Diebold–Mariano variance uses autocovariances up to the overlap, with the small-sample
correction of Harvey, Leybourne and Newbold (1997).
"""

import numpy as np
from scipy import stats


def diebold_mariano(errors_a: np.ndarray, errors_b: np.ndarray, horizon: int = 1) -> dict[str, float]:
    """Test equal squared-error loss of forecasts a and b; a negative statistic favours a.

    2-D errors (days × assets) are averaged across assets per day first, so the test is on
    the daily loss of the whole portfolio of forecasts.
    """
    loss_a, loss_b = np.square(np.asarray(errors_a, float)), np.square(np.asarray(errors_b, float))
    diff = loss_a - loss_b
    if diff.ndim == 2:
        diff = diff.mean(axis=1)
    n = diff.size
    lags = max(int(horizon), 1)
    if n <= 2 * lags:
        raise ValueError(f"{n} days are too few for a Diebold-Mariano test at horizon {horizon}")
    centred = diff - diff.mean()
    autocov = [centred @ centred / n] + [centred[k:] @ centred[:-k] / n for k in range(1, lags)]
    variance = (autocov[0] + 2 * sum(autocov[1:])) / n
    if variance <= 0:
        return {"statistic": float("nan"), "p_value": float("nan"),
                "mean_loss_diff": float(diff.mean()), "n_days": n}
    correction = np.sqrt((n + 1 - 2 * lags + lags * (lags - 1) / n) / n)
    statistic = correction * diff.mean() / np.sqrt(variance)
    p_value = 2 * stats.t.sf(abs(statistic), df=n - 1)
    return {"statistic": float(statistic), "p_value": float(p_value),
            "mean_loss_diff": float(diff.mean()), "n_days": n}


def binomial_direction_test(correct: int, total: int, majority_share: float) -> dict[str, float]:
    """One-sided binomial test: is the hit rate above the majority-class baseline's?

    Days and assets are treated as independent, which they are not quite; read the
    p-value as optimistic.
    """
    result = stats.binomtest(int(correct), int(total), p=float(majority_share), alternative="greater")
    return {"accuracy": correct / total, "baseline": float(majority_share),
            "p_value": float(result.pvalue)}


def information_coefficient(predicted: np.ndarray, realised: np.ndarray) -> dict:
    """Spearman correlation across assets of forecast and realised return, per day.

    Returns its mean, standard deviation, their ratio (the information ratio of the IC),
    a t-statistic of the mean, and the daily values.
    """
    predicted, realised = np.asarray(predicted, float), np.asarray(realised, float)
    ranks_p = stats.rankdata(predicted, axis=1)
    ranks_r = stats.rankdata(realised, axis=1)
    ranks_p -= ranks_p.mean(axis=1, keepdims=True)
    ranks_r -= ranks_r.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ranks_p**2).sum(axis=1) * (ranks_r**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        daily = (ranks_p * ranks_r).sum(axis=1) / denominator
    daily = daily[np.isfinite(daily)]
    if daily.size < 2:  # a forecast equal for every asset (zero, say) ranks nothing
        return {"mean": float("nan"), "std": float("nan"), "ir": float("nan"), "t_stat": float("nan"),
                "n_days": int(daily.size), "daily": daily}
    mean, std = float(daily.mean()), float(daily.std(ddof=1))
    return {"mean": mean, "std": std, "ir": mean / std if std > 0 else float("nan"),
            "t_stat": mean / std * np.sqrt(daily.size) if std > 0 else float("nan"),
            "n_days": int(daily.size), "daily": daily}
