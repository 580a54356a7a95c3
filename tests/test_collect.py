"""The collect stage: sources, the Yahoo cache and retries, cleaning and calendar alignment.

`yf.download` is replaced by a fake that answers in yfinance 1.x's real shape: (Price, Ticker)
MultiIndex columns (Close, High, Low, Open, Volume) over a DatetimeIndex named "Date", an
exclusive `end`, and an empty frame (with an 'Adj Close' column) for a failed ticker.
"""

import json
import logging
import warnings
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from tenacity import wait_none

from roicast import paths
from roicast.config import RunParams
from roicast.data import cleaning, collect, sources, yahoo
from roicast.errors import DataError, DownloadError, RoicastWarning
from roicast.runs import artefacts

PRICE_FIELDS = ("Close", "High", "Low", "Open", "Volume")


def yf_frame(closes: pd.DataFrame, tz: str | None = None) -> pd.DataFrame:
    """What `yf.download(..., auto_adjust=True, group_by="column")` returns for `closes`."""
    fields = {"Close": closes, "High": closes * 1.01, "Low": closes * 0.99, "Open": closes,
              "Volume": closes * 0 + 1e6}
    frame = pd.concat(fields, axis=1, names=["Price", "Ticker"])
    index = pd.DatetimeIndex(closes.index, name="Date")
    frame.index = index.tz_localize(tz) if tz else index
    return frame


def yf_failure(tickers: list[str]) -> pd.DataFrame:
    """What yf.download returns when every ticker failed: no rows, yfinance's empty columns."""
    columns = pd.MultiIndex.from_product(
        [["Adj Close", *PRICE_FIELDS], tickers], names=["Price", "Ticker"])
    return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], name="Date"), dtype=float)


class FakeYahoo:
    """Stands in for `yf.download`: serves `table`, records every call, fails on request."""

    def __init__(self, table: pd.DataFrame, errors: int = 0):
        self.table = table
        self.errors = errors
        self.calls: list[dict] = []

    def __call__(self, tickers, start=None, end=None, **kwargs):
        self.calls.append({"tickers": tickers, "start": start, "end": end, **kwargs})
        if self.errors:
            self.errors -= 1
            raise ConnectionError("curl: (6) Could not resolve host: query2.finance.yahoo.com")
        names = tickers.split() if isinstance(tickers, str) else list(tickers)
        known = [t for t in names if t in self.table.columns]
        rows = self.table.loc[(self.table.index >= start) & (self.table.index < end), known]
        if not known or rows.empty:
            return yf_failure(names)
        return yf_frame(rows)

    @property
    def periods(self) -> list[tuple[str, str]]:
        return [(call["start"], call["end"]) for call in self.calls]


@pytest.fixture
def yahoo_table(sample_prices) -> pd.DataFrame:
    """Real prices under Yahoo-style symbols, including ones that need escaping on disk."""
    table = sample_prices[["AAPL", "KO", "XOM"]].copy()
    table.columns = ["AAPL", "GC=F", "^NSEI"]
    return table


@pytest.fixture
def fake(monkeypatch, yahoo_table) -> FakeYahoo:
    monkeypatch.setattr(yahoo, "RETRY_WAIT", wait_none())
    fake = FakeYahoo(yahoo_table)
    monkeypatch.setattr(yahoo.yf, "download", fake)
    return fake


def quiet_fetch(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RoicastWarning)
        return yahoo.fetch_prices(*args, **kwargs)


# --- parsing yfinance's frames ----------------------------------------------------------------

def test_parse_download_reads_the_multiindex_of_one_ticker(yahoo_table):
    frames = yahoo.parse_download(yf_frame(yahoo_table[["GC=F"]].iloc[:10]), ["GC=F"])
    assert list(frames) == ["GC=F"]
    frame = frames["GC=F"]
    assert list(frame.columns) == list(PRICE_FIELDS)
    assert frame.index.name == "date" and frame.index.tz is None
    np.testing.assert_allclose(frame["Close"], yahoo_table["GC=F"].iloc[:10])


def test_parse_download_splits_many_tickers_and_keeps_local_trading_days(yahoo_table):
    closes = yahoo_table.iloc[:5]
    frames = yahoo.parse_download(yf_frame(closes, tz="Asia/Kolkata"), ["AAPL", "gc=f", "^NSEI"])
    assert list(frames) == ["AAPL", "gc=f", "^NSEI"]
    assert frames["^NSEI"].index.equals(pd.DatetimeIndex(closes.index, name="date"))


def test_parse_download_leaves_out_failed_tickers(yahoo_table):
    closes = yahoo_table[["AAPL", "GC=F"]].iloc[:5].copy()
    closes["GC=F"] = np.nan
    assert list(yahoo.parse_download(yf_frame(closes), ["AAPL", "GC=F"])) == ["AAPL"]
    assert yahoo.parse_download(yf_failure(["NOPE"]), ["NOPE"]) == {}


# --- fetching with the cache ------------------------------------------------------------------

def test_fetch_downloads_each_ticker_and_writes_cache_and_manifest(fake, workdir):
    prices, info = yahoo.fetch_prices(["AAPL", "GC=F"], "2022-01-03", "2022-06-30")
    assert list(prices.columns) == ["AAPL", "GC=F"]
    assert prices.index[0] == pd.Timestamp("2022-01-03")
    assert prices.index[-1] == pd.Timestamp("2022-06-30")
    assert info["downloaded"] == ["AAPL", "GC=F"] and info["missing"] == []
    call = fake.calls[0]
    assert (call["start"], call["end"]) == ("2022-01-03", "2022-07-01")  # end is exclusive
    assert call["auto_adjust"] is True and call["progress"] is False

    cache = paths.cache_dir("yahoo")
    assert cache == workdir / "data" / "cache" / "yahoo"
    assert (cache / "GC%3DF.parquet").exists() and (cache / "AAPL.parquet").exists()
    entry = json.loads((cache / "manifest.json").read_text())["GC=F"]
    assert entry["yfinance_version"] == yahoo.yf.__version__
    assert entry["auto_adjust"] is True
    assert datetime.fromisoformat(entry["fetched_at"]).utcoffset().total_seconds() == 0
    assert (entry["first"], entry["last"]) == ("2022-01-03", "2022-06-30")
    assert entry["rows"] == len(prices)


def test_a_later_request_downloads_only_the_dates_not_cached(fake):
    yahoo.fetch_prices(["GC=F"], "2022-01-03", "2022-06-30")
    fake.calls.clear()
    prices, info = yahoo.fetch_prices(["GC=F"], "2021-06-01", "2022-12-28")
    assert fake.periods == [("2021-06-01", "2022-01-03"), ("2022-07-01", "2022-12-29")]
    assert prices.index[0] == pd.Timestamp("2021-06-01") and len(prices) > 370
    assert prices.index.is_unique and prices.index.is_monotonic_increasing
    fake.calls.clear()
    _, info = yahoo.fetch_prices(["GC=F"], "2021-07-01", "2022-12-01")
    assert fake.calls == [] and info["from_cache"] == ["GC=F"]


def test_a_failing_download_leaves_the_cache_untouched_and_runs_from_it(fake):
    yahoo.fetch_prices(["^NSEI"], "2022-01-03", "2022-06-30")
    cached = yahoo.cache_file(paths.cache_dir("yahoo"), "^NSEI")
    before = cached.read_bytes()
    fake.errors, fake.calls = 100, []
    with pytest.warns(RoicastWarning, match="running from the cache"):
        prices, info = yahoo.fetch_prices(["^NSEI"], "2022-01-03", "2022-09-30")
    assert cached.read_bytes() == before
    assert len(fake.calls) == yahoo.RETRY_ATTEMPTS
    assert info["ran_from_cache"] and "ConnectionError" in info["failed"]["^NSEI"]
    assert prices.index[-1] == pd.Timestamp("2022-06-30")


def test_transient_errors_are_retried_until_the_download_succeeds(fake):
    fake.errors = 2
    prices, info = yahoo.fetch_prices(["AAPL"], "2022-01-03", "2022-01-31")
    assert len(fake.calls) == 3
    assert info["downloaded"] == ["AAPL"] and len(prices) == 20


def test_a_network_failure_yfinance_only_logs_is_retried(monkeypatch):
    monkeypatch.setattr(yahoo, "RETRY_WAIT", wait_none())
    calls = []

    def logs_and_returns_nothing(tickers, **kwargs):
        calls.append(tickers)
        logging.getLogger("yfinance").error("['AAPL']: DNSError('Failed to perform, curl: (6) "
                                            "Could not resolve host: query2.finance.yahoo.com')")
        return yf_failure([tickers])

    monkeypatch.setattr(yahoo.yf, "download", logs_and_returns_nothing)
    with pytest.raises(DownloadError, match="DNSError"):
        yahoo.fetch_prices(["AAPL"], "2022-01-03", "2022-01-31")
    assert len(calls) == yahoo.RETRY_ATTEMPTS


def test_a_ticker_yahoo_does_not_know_is_missing_and_never_cached(fake):
    prices, info = yahoo.fetch_prices(["AAPL", "NOPE.NS"], "2022-01-03", "2022-01-31")
    assert list(prices.columns) == ["AAPL"]
    assert info["missing"] == ["NOPE.NS"] and info["returned_nothing"] == ["NOPE.NS"]
    assert len(fake.calls) == 2  # an empty answer is not retried
    assert not yahoo.cache_file(paths.cache_dir("yahoo"), "NOPE.NS").exists()
    assert "NOPE.NS" not in artefacts.read_json(paths.cache_dir("yahoo") / "manifest.json")


def test_offline_without_a_cache_points_to_the_sample(fake):
    with pytest.raises(DownloadError, match="source sample"):
        yahoo.fetch_prices(["AAPL"], "2022-01-03", "2022-01-31", offline=True)
    assert fake.calls == []


def test_failed_downloads_without_a_cache_raise_naming_the_tickers(fake):
    fake.errors = 100
    with pytest.raises(DownloadError, match="AAPL, GC=F.*source sample"):
        yahoo.fetch_prices(["AAPL", "GC=F"], "2022-01-03", "2022-01-31")
    assert len(fake.calls) == yahoo.RETRY_ATTEMPTS  # Yahoo is unreachable: GC=F is not tried


def test_offline_reads_the_cache_without_downloading(fake, monkeypatch):
    yahoo.fetch_prices(["AAPL"], "2022-01-03", "2022-06-30")
    fake.calls.clear()
    monkeypatch.setenv(yahoo.OFFLINE_ENV, "1")
    prices, info = quiet_fetch(["AAPL", "GC=F"], "2022-01-03", "2022-03-31")
    assert fake.calls == [] and info["offline"] and info["ran_from_cache"]
    assert list(prices.columns) == ["AAPL"] and info["missing"] == ["GC=F"]


# --- collect through Yahoo --------------------------------------------------------------------

def yahoo_params(**values) -> RunParams:
    return RunParams(source="yahoo", start="2022-01-03", end="2022-06-30", **values)


def test_collect_drops_a_ticker_without_data_with_a_warning(fake):
    with pytest.warns(RoicastWarning, match="No prices for NOPE"):
        result = collect.collect_prices(yahoo_params(tickers=["AAPL", "NOPE", "GC=F"]))
    assert list(result.prices.columns) == ["AAPL", "GC=F"]
    assert result.info["missing_tickers"] == ["NOPE"]
    assert result.info["yahoo"]["downloaded"] == ["AAPL", "GC=F"]
    assert any("NOPE" in message for message in result.info["warnings"])


def test_collect_stops_on_a_missing_ticker_when_asked(fake):
    with pytest.raises(DataError, match="NOPE"):
        collect.collect_prices(yahoo_params(tickers=["AAPL", "NOPE"], on_missing="error"))


def test_collect_needs_min_assets(fake):
    with pytest.raises(DataError, match="min_assets=2"), pytest.warns(RoicastWarning):
        collect.collect_prices(yahoo_params(tickers=["AAPL", "NOPE"]))


# --- the bundled sample -----------------------------------------------------------------------

def test_sample_default_period_is_the_last_two_and_a_half_years():
    prices = sources.read_sample(None, None, None, 2.5)
    assert prices.index[-1] == pd.Timestamp("2022-12-28")
    assert prices.index[0] == pd.Timestamp("2020-06-29")  # first trading day from 2020-06-28
    assert prices.shape == (631, 20) and prices.index.name == "date"
    assert all(dtype == np.float64 for dtype in prices.dtypes)


def test_collect_on_the_sample_writes_prices_and_collect_json(workdir):
    params = RunParams(tickers=["AAPL", "KO", "XOM"], start="2021-01-01", end="2021-12-31")
    result = collect.collect_prices(params)
    run = paths.run_dir("t")
    collect.write_collect_outputs(run, result)
    saved = artefacts.read_parquet(run / "prices.parquet")
    pd.testing.assert_frame_equal(saved, result.prices)
    info = artefacts.read_json(run / "collect.json")
    assert (info["start"], info["end"], info["rows"]) == ("2021-01-04", "2021-12-31", 252)
    assert info["assets"] == ["AAPL", "KO", "XOM"] and info["missing_tickers"] == []
    assert info["per_asset"][0]["first_date"] == "2021-01-04"
    assert list(collect.asset_summary(result).index) == ["AAPL", "KO", "XOM"]


def test_an_unknown_sample_ticker_names_the_available_ones():
    params = RunParams(tickers=["AAPL", "KO", "ZZZ"], on_missing="error")
    with pytest.raises(DataError, match=r"ZZZ.*The bundled sample has: AAPL, AMD"):
        collect.collect_prices(params)


def test_too_little_history_says_how_many_days_there_are():
    with pytest.raises(DataError, match="Only 19 trading day"):
        collect.collect_prices(RunParams(start="2022-12-01", end="2022-12-28"))


# --- your own CSV -----------------------------------------------------------------------------

@pytest.fixture
def wide(sample_prices) -> pd.DataFrame:
    return sample_prices[["AAPL", "KO"]].iloc[:40]


def test_a_wide_csv_is_read_as_is(tmp_path, wide):
    path = tmp_path / "wide.csv"
    wide.rename_axis("Date").to_csv(path)
    prices = sources.read_csv_prices(path, None, None, None, None)
    pd.testing.assert_frame_equal(prices, wide, check_freq=False)


def test_a_long_csv_is_pivoted_and_repeated_rows_are_reported(tmp_path, wide):
    long = wide.rename_axis("DATE").reset_index().melt("DATE", var_name="Symbol",
                                                       value_name="Close")
    long = pd.concat([long, long.iloc[[3]]])
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    with pytest.warns(RoicastWarning, match="1 repeated"):
        prices = sources.read_csv_prices(path, None, ["ko", "AAPL"], None, None)
    pd.testing.assert_frame_equal(prices, wide[["KO", "AAPL"]], check_freq=False,
                                  check_names=False)


def test_the_date_column_can_be_named_by_parameter(tmp_path, wide):
    path = tmp_path / "when.csv"
    wide.rename_axis("when").to_csv(path)
    prices = sources.read_csv_prices(path, "When", None, "2020-07-01", "2020-07-31")
    assert prices.index[0] == pd.Timestamp("2020-07-01") and len(prices) == 22


def test_a_csv_without_a_date_column_lists_its_columns(tmp_path, wide):
    path = tmp_path / "nodate.csv"
    wide.rename_axis("when").to_csv(path)
    with pytest.raises(DataError, match="Its columns: when, AAPL, KO"):
        sources.read_csv_prices(path, None, None, None, None)


def test_csv_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        sources.read_csv_prices(tmp_path / "nope.csv", None, None, None, None)
    path = tmp_path / "noprice.csv"
    path.write_text("date,ticker,volume\n2022-01-03,AAPL,100\n")
    with pytest.raises(DataError, match="no price column"):
        sources.read_csv_prices(path, None, None, None, None)


def test_csv_dates_with_mixed_utc_offsets_keep_their_local_day(tmp_path):
    path = tmp_path / "tz.csv"
    path.write_text("Datetime,GOLD\n2022-03-11 00:00:00+05:30,1.0\n"
                    "2022-03-14 00:00:00-04:00,2.0\n")
    prices = sources.read_csv_prices(path, None, None, None, None)
    assert list(prices.index) == [pd.Timestamp("2022-03-11"), pd.Timestamp("2022-03-14")]


def test_collect_from_a_csv_end_to_end(tmp_path, sample_prices):
    path = tmp_path / "mine.csv"
    sample_prices[["AAPL", "KO", "XOM"]].to_csv(path)
    result = collect.collect_prices(RunParams(source="csv", csv_path=str(path)))
    assert result.prices.shape == (631, 3) and result.info["csv_path"] == str(path)


# --- cleaning ---------------------------------------------------------------------------------

def frame(values: dict, dates: list[str]) -> pd.DataFrame:
    return pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="date"), dtype=float)


DAYS = ["2022-01-03", "2022-01-04", "2022-01-05", "2022-01-06"]


def test_unsorted_dates_are_sorted():
    checked = cleaning.validate_prices(frame({"A": [1, 2, 3, 4]}, DAYS[::-1]))
    assert checked.index.is_monotonic_increasing
    assert checked["A"].tolist() == [4, 3, 2, 1]


def test_duplicate_dates_keep_the_last_row_with_a_warning():
    data = frame({"A": [1, 2, 3, 4], "B": [5, 6, 6, 7]}, DAYS[:2] + DAYS[1:3])
    with pytest.warns(RoicastWarning, match=r"2022-01-04.*values differ for A\.") as record:
        checked = cleaning.validate_prices(data)
    assert len(record) == 1
    assert checked.loc["2022-01-04", "A"] == 3 and len(checked) == 3


@pytest.mark.parametrize("bad", [0.0, -1.5, np.inf])
def test_impossible_prices_become_missing_with_a_warning_naming_the_asset(bad):
    data = frame({"A": [1, 2, 3, 4], "B": [1, bad, 3, 4]}, DAYS)
    with pytest.warns(RoicastWarning, match=r"^B: 1 zero, negative or infinite.*2022-01-04"):
        checked = cleaning.validate_prices(data)
    assert np.isnan(checked.loc["2022-01-04", "B"]) and checked["A"].notna().all()


def test_non_numeric_prices_become_missing_with_a_warning():
    data = pd.DataFrame({"A": ["1", "n/a", "3", "4"]}, index=pd.DatetimeIndex(DAYS))
    with pytest.warns(RoicastWarning, match="A: 1 non-numeric"):
        checked = cleaning.validate_prices(data)
    assert checked["A"].isna().tolist() == [False, True, False, False]


def test_an_asset_without_prices_is_dropped_and_nothing_left_is_an_error():
    data = frame({"A": [1, 2, 3, 4], "B": [np.nan] * 4}, DAYS)
    with pytest.warns(RoicastWarning, match="No usable prices for B"):
        assert list(cleaning.validate_prices(data).columns) == ["A"]
    with pytest.raises(DataError), pytest.warns(RoicastWarning):
        cleaning.validate_prices(data[["B"]])


def test_forward_fill_stops_at_the_limit_and_never_fills_backwards():
    dates = pd.bdate_range("2022-01-03", periods=12).strftime("%Y-%m-%d").tolist()
    late = [np.nan, np.nan, 10, 11, *[np.nan] * 7, 12]
    prices, missing = cleaning.align_calendar(frame({"A": range(1, 13), "B": late}, dates), 5)
    assert prices["B"].iloc[:2].isna().all()  # starts late: no backward fill
    assert prices["B"].iloc[4:9].tolist() == [11] * 5  # carried forward 5 rows
    assert prices["B"].iloc[9:11].isna().all()  # then missing
    assert missing["B"].tolist() == [np.isnan(v) for v in late]
    report = cleaning.asset_report(prices.mask(missing), prices, missing)
    assert report.loc["B", "filled_days"] == 5 and report.loc["B", "still_missing"] == 4
    assert report.loc["B", "longest_gap"] == 7
    assert report.loc["B", "first_date"] == pd.Timestamp(dates[2])


def test_asset_report_flags_stale_runs_and_jumps():
    prices = frame({"A": [10, 10, 10, 14]}, DAYS)
    report = cleaning.asset_report(prices, prices, prices.isna())
    assert report.loc["A", "stale_days"] == 2
    assert report.loc["A", "max_abs_move_pct"] == pytest.approx(40)
    assert report.loc["A", "max_move_date"] == pd.Timestamp("2022-01-06")
    assert report.loc["A", "suspicious_jump"]


def test_markets_with_different_holidays_share_one_calendar(yahoo_table):
    """NSE shuts on Republic Day (26 Jan), COMEX on Martin Luther King Day (17 Jan)."""
    days = pd.bdate_range("2022-01-10", "2022-01-31")
    closes = yahoo_table.iloc[: len(days)].set_axis(days)
    nse = closes[["^NSEI"]].drop(pd.Timestamp("2022-01-26"))
    comex = closes[["GC=F"]].drop(pd.Timestamp("2022-01-17"))
    frames = {**yahoo.parse_download(yf_frame(nse, tz="Asia/Kolkata"), ["^NSEI"]),
              **yahoo.parse_download(yf_frame(comex, tz="America/New_York"), ["GC=F"])}
    wide = pd.DataFrame({ticker: f["Close"] for ticker, f in frames.items()})
    prices, missing = cleaning.align_calendar(cleaning.validate_prices(wide), 5)
    assert prices.index.equals(pd.DatetimeIndex(days, name="date"))
    returns = prices.pct_change(fill_method=None)
    assert returns.loc["2022-01-26", "^NSEI"] == 0  # holiday: price repeated, zero return
    assert returns.loc["2022-01-17", "GC=F"] == 0
    own = nse["^NSEI"].pct_change()  # the market's own returns appear once each
    assert returns.loc["2022-01-27", "^NSEI"] == pytest.approx(own.loc["2022-01-27"])
    assert missing.sum().to_dict() == {"^NSEI": 1, "GC=F": 1}
