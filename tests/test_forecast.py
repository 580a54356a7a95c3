"""The forecast of the days after the data: its calendar, its inputs and its honesty checks."""

import pandas as pd
import pytest

from roicast import paths
from roicast.config import RunParams
from roicast.errors import DataError, ParameterError
from roicast.forecasting import forecast
from roicast.runs import artefacts

DAYS = pd.bdate_range("2022-12-01", "2022-12-30")


def _prices(columns=("AAA", "BBB")) -> pd.DataFrame:
    return pd.DataFrame({c: range(100, 100 + len(DAYS)) for c in columns}, index=DAYS, dtype=float)


def test_a_day_without_prices_rolls_back_to_the_trading_day_before_with_a_note():
    history, day, notes = forecast.cut_at(_prices(), "2022-12-25")
    assert day == pd.Timestamp("2022-12-23") and history.index.max() == day
    assert "2022-12-25" in notes[0] and "2022-12-23" in notes[0]
    assert forecast.cut_at(_prices(), None)[1] == DAYS[-1]
    with pytest.raises(ParameterError, match="before the first price"):
        forecast.cut_at(_prices(), "2021-01-01")


def test_forecast_dates_use_the_data_then_business_days():
    assert forecast.future_dates(_prices(), pd.Timestamp("2022-12-28"), 4) == [
        pd.Timestamp(d) for d in ("2022-12-29", "2022-12-30", "2023-01-02", "2023-01-03")]


def test_a_missing_trained_asset_stops_and_an_extra_one_is_ignored():
    with pytest.raises(DataError, match="lack CCC"):
        forecast.align_assets(_prices(), ["AAA", "CCC"])
    with pytest.warns(UserWarning, match="Ignoring BBB"):
        aligned = forecast.align_assets(_prices(("BBB", "AAA")), ["AAA"])
    assert list(aligned.columns) == ["AAA"]


def test_staleness_counts_business_days():
    assert forecast.staleness_days(pd.Timestamp("2022-12-30"), pd.Timestamp("2023-01-03")) == 2
    assert forecast.staleness_days(pd.Timestamp("2023-01-03"), pd.Timestamp("2023-01-03")) == 0


def test_a_forecast_takes_none_of_its_own_parameters_from_the_run():
    saved = RunParams(run_id="r", source="csv", csv_path="/data/old.csv", asof="2022-06-01", refit=True,
                      forecast_days=10, seq_len=30)
    artefacts.write_json(paths.run_dir("r") / "params.json", saved.model_dump())
    params = forecast.run_params("r")
    assert (params.asof, params.refit, params.forecast_days, params.seq_len) == (None, False, 5, 30)
    assert forecast.price_source(params) == {"source": "csv", "csv_path": "/data/old.csv"}
    own = params.model_copy(update={"forecast_csv_path": "/data/new.csv"})
    assert forecast.price_source(own) == {"source": "csv", "csv_path": "/data/new.csv"}
    assert forecast.price_source(params.model_copy(update={"forecast_source": "yahoo"})) == {
        "source": "yahoo", "csv_path": None}
