"""What the forecasts would have earned: a daily long-short portfolio, after costs.

Each day the assets are ranked by their forecast; the portfolio holds the top half long
and the bottom half short with equal gross weight, and pays `cost_bps` per unit of
turnover. The forecast for day t uses prices up to day t-1 only, so the return earned is
day t's. Compared with holding every asset in equal weights.
"""

import numpy as np
import pandas as pd

TRADING_DAYS = 252


def rank_weights(signal: np.ndarray) -> np.ndarray:
    """Dollar-neutral weights from cross-sectional ranks; gross exposure 1 each day."""
    ranks = pd.DataFrame(signal).rank(axis=1).to_numpy()
    centred = ranks - ranks.mean(axis=1, keepdims=True)
    gross = np.abs(centred).sum(axis=1, keepdims=True)
    return np.divide(centred, gross, out=np.zeros_like(centred), where=gross > 0)


def long_short_backtest(signal: np.ndarray, returns_pct: np.ndarray, dates: np.ndarray,
                        assets: np.ndarray, cost_bps: float = 5.0) -> pd.DataFrame:
    """Daily returns (fractions) of the long-short strategy and of equal-weight buy and hold.

    `returns_pct` are the log returns in percent of the forecast days, shaped like `signal`.
    """
    simple = np.expm1(np.asarray(returns_pct, float) / 100.0)
    weights = rank_weights(np.asarray(signal, float))
    turnover = np.abs(np.diff(weights, axis=0, prepend=np.zeros((1, weights.shape[1])))).sum(axis=1)
    frame = pd.DataFrame({
        "strategy": (weights * simple).sum(axis=1) - turnover * cost_bps / 1e4,
        "buy_and_hold": simple.mean(axis=1),
        "turnover": turnover,
    }, index=pd.DatetimeIndex(pd.to_datetime(dates), name="date"))
    frame.attrs["assets"] = list(map(str, assets))
    for column in ("strategy", "buy_and_hold"):
        frame[f"cumulative_{column}"] = (1 + frame[column]).cumprod() - 1
    return frame


def performance_summary(daily: pd.Series) -> dict[str, float]:
    """Annualised return and volatility, Sharpe ratio (no risk-free rate), max drawdown, hit rate."""
    wealth = (1 + daily).cumprod()
    years = len(daily) / TRADING_DAYS
    volatility = float(daily.std(ddof=1) * np.sqrt(TRADING_DAYS))
    return {
        "annual_return": float(wealth.iloc[-1] ** (1 / years) - 1),
        "annual_volatility": volatility,
        "sharpe": float(daily.mean() * TRADING_DAYS / volatility) if volatility > 0 else float("nan"),
        "max_drawdown": float((wealth / wealth.cummax() - 1).min()),
        "hit_rate": float((daily > 0).mean()),
    }


def summary_table(daily: pd.DataFrame) -> pd.DataFrame:
    """performance_summary of the strategy and of buy and hold, side by side."""
    table = pd.DataFrame({name: performance_summary(daily[name])
                          for name in ("strategy", "buy_and_hold")}).T
    table.loc["strategy", "mean_turnover"] = float(daily["turnover"].mean())
    return table
