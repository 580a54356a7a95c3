"""A saved forecast as people read it: tomorrow's expected returns, and every model side by side.

Pandas only, so the report pages and the command line show a forecast without loading a network.
"""

import pandas as pd

HEADLINE_MODELS = ("hybrid_refit", "ensemble", "hybrid")  # the refit only when asked for (refit: true)


def headline_model(frame: pd.DataFrame) -> str:
    """The model a forecast is read by: the first of HEADLINE_MODELS that it holds."""
    present = set(frame["model"])
    return next(model for model in HEADLINE_MODELS if model in present)


def expected_returns(frame: pd.DataFrame) -> pd.DataFrame:
    """Step 1 per asset of the headline model, highest expected return first."""
    table = frame[(frame["step"] == 1) & (frame["model"] == headline_model(frame))]
    table = table.drop(columns=["step", "method"])
    table = table.assign(date=table["date"].dt.strftime("%Y-%m-%d"))
    column = "probability_up" if "probability_up" in table else "forecast_roi_pct"
    return table.sort_values(column, ascending=False).set_index("asset")


def by_model(frame: pd.DataFrame) -> pd.DataFrame:
    """The forecast (or probability of an up day) per asset and step, one column per model."""
    column = "probability_up" if "probability_up" in frame else "forecast_roi_pct"
    return frame.pivot_table(index=["asset", "step"], columns="model", values=column, sort=False)
