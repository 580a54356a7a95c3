"""Read prices from the bundled sample or from a user's CSV file into one wide layout.

Every reader returns a frame with a "date" DatetimeIndex (tz-naive midnights), one float
column per asset named as in the source, and only the requested assets that exist there.
Requested assets that the source lacks are simply absent: `missing_assets` names them and
the collect stage decides, through `on_missing`, whether that is an error.
"""

import warnings
from pathlib import Path

import pandas as pd

from roicast import paths
from roicast.cleaning import as_daily_index, parse_dates
from roicast.errors import DataError, RoicastWarning

DATE_NAMES = ("date", "datetime", "timestamp", "time", "day")
TICKER_NAMES = ("ticker", "symbol", "asset")
PRICE_NAMES = ("adj close", "adj_close", "adjclose", "adjusted close", "close", "price")
"""Price columns of a long CSV in order of preference: adjusted prices first."""


def resolve_period(start: str | None, end: str | None, history_years: float | None,
                   latest: pd.Timestamp, earliest: pd.Timestamp | None = None
                   ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last date of the request.

    `end` defaults to `latest`; `start` to `end` minus `history_years` (whole months), or to
    `earliest` when `history_years` is None.
    """
    last = pd.Timestamp(end) if end else pd.Timestamp(latest)
    if start:
        first = pd.Timestamp(start)
    elif history_years is not None:
        first = last - pd.DateOffset(months=round(history_years * 12))
    else:
        first = pd.Timestamp(earliest) if earliest is not None else last
    return first.normalize(), last.normalize()


def _match(available: list[str], tickers: list[str] | None) -> list[str]:
    """The available columns for the requested tickers, in request order (case-insensitive)."""
    if tickers is None:
        return list(available)
    by_upper = {name.upper(): name for name in available}
    chosen = [by_upper[t.upper()] for t in tickers if t.upper() in by_upper]
    return list(dict.fromkeys(chosen))


def missing_assets(requested: list[str] | None, columns: list[str]) -> list[str]:
    """Requested tickers with no column (compared case-insensitively)."""
    have = {str(c).upper() for c in columns}
    return [t for t in requested or [] if t.upper() not in have]


def _select(frame: pd.DataFrame, tickers: list[str] | None, first: pd.Timestamp,
            last: pd.Timestamp, origin: str) -> pd.DataFrame:
    frame = frame[_match([str(c) for c in frame.columns], tickers)]
    frame = frame.loc[(frame.index >= first) & (frame.index <= last)]
    if len(frame) == 0:
        raise DataError(f"{origin} has no dates between {first:%Y-%m-%d} and {last:%Y-%m-%d}. "
                        "Change start, end or history_years.")
    return frame


def read_sample(tickers: list[str] | None, start: str | None, end: str | None,
                history_years: float) -> pd.DataFrame:
    """Prices of the bundled S&P 500 sample (20 stocks, 1990-01-02 to 2022-12-28).

    By default the period ends on the file's last date and covers `history_years` before it.
    """
    frame = pd.read_csv(paths.SAMPLE_PRICES, index_col=0, parse_dates=True)
    frame.index = as_daily_index(frame.index)
    frame.columns = [str(c) for c in frame.columns]
    first, last = resolve_period(start, end, history_years, frame.index.max())
    return _select(frame.astype(float), tickers, first, last, "The bundled sample")


def sample_tickers() -> list[str]:
    """The assets of the bundled sample."""
    return [str(c) for c in pd.read_csv(paths.SAMPLE_PRICES, nrows=0, index_col=0).columns]


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {str(c).strip().lower(): c for c in columns}
    return next((lowered[name] for name in names if name in lowered), None)


def _date_column(table: pd.DataFrame, date_column: str | None, path: Path) -> str:
    columns = [str(c) for c in table.columns]
    listed = ", ".join(columns)
    if date_column is not None:
        found = _find(columns, (date_column.strip().lower(),))
        if found is None:
            raise DataError(f"{path} has no column '{date_column}' (csv_date_column). "
                            f"Its columns: {listed}.")
        return found
    found = _find(columns, DATE_NAMES)
    if found is None and columns[0].startswith("Unnamed: 0"):
        first = table.iloc[:, 0]
        if parse_dates(first.astype(str)).notna().all():
            found = columns[0]
    if found is None:
        raise DataError(f"Cannot find the date column of {path}: none is named "
                        f"{', '.join(DATE_NAMES)}. Its columns: {listed}. "
                        "Name it with csv_date_column.")
    return found


def _read_table(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    if table.shape[1] == 1:
        table = pd.read_csv(path, sep=None, engine="python")
    return table


def _pivot_long(table: pd.DataFrame, date_col: str, ticker_col: str, price_col: str,
                path: Path) -> pd.DataFrame:
    long = table[[date_col, ticker_col, price_col]].dropna(subset=[ticker_col])
    long = long.assign(**{ticker_col: long[ticker_col].astype(str).str.strip()})
    duplicated = long.duplicated(subset=[date_col, ticker_col], keep="last")
    if duplicated.any():
        warnings.warn(f"{path.name}: {int(duplicated.sum())} repeated (date, {ticker_col}) "
                      "row(s); kept the last of each.", RoicastWarning, stacklevel=3)
        long = long[~duplicated]
    wide = long.pivot(index=date_col, columns=ticker_col, values=price_col)
    wide.columns = [str(c) for c in wide.columns]
    return wide


def read_csv_prices(path: str | Path, date_column: str | None, tickers: list[str] | None,
                    start: str | None, end: str | None,
                    history_years: float | None = None) -> pd.DataFrame:
    """Prices from a CSV file in wide or long layout.

    Wide: a date column and one price column per asset. Long: a date column, a ticker
    column (ticker, symbol or asset) and a price column (adj close, close or price), all
    matched case-insensitively. The date column is found by name (date, datetime, timestamp,
    time, day) unless `date_column` names it. Without `start`, the period covers
    `history_years` before `end`, or the whole file when `history_years` is None.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"CSV file {path} does not exist. Check csv_path.")
    table = _read_table(path)
    if table.empty:
        raise DataError(f"CSV file {path} holds no rows.")
    date_col = _date_column(table, date_column, path)
    others = [c for c in table.columns if c != date_col]
    ticker_col, price_col = _find(others, TICKER_NAMES), _find(others, PRICE_NAMES)
    table[date_col] = parse_dates(table[date_col])
    bad_dates = int(table[date_col].isna().sum())
    if bad_dates == len(table):
        raise DataError(f"Column '{date_col}' of {path} holds no readable dates. "
                        "Use YYYY-MM-DD, or name the right column with csv_date_column.")
    if bad_dates:
        warnings.warn(f"{path.name}: {bad_dates} row(s) with an unreadable date in "
                      f"'{date_col}' ignored.", RoicastWarning, stacklevel=2)
        table = table[table[date_col].notna()]
    if ticker_col is not None:
        if price_col is None:
            raise DataError(f"{path} has a ticker column '{ticker_col}' but no price column "
                            f"(one of: {', '.join(PRICE_NAMES)}). Its columns: "
                            f"{', '.join(map(str, table.columns))}.")
        wide = _pivot_long(table, date_col, ticker_col, price_col, path)
    else:
        wide = table.set_index(date_col)
        numeric = wide.apply(pd.to_numeric, errors="coerce").notna().any()
        if not numeric.any():
            raise DataError(f"{path} has no price column: no column besides '{date_col}' "
                            f"holds numbers. Its columns: {', '.join(map(str, table.columns))}.")
        wide.columns = [str(c).strip() for c in wide.columns]
    wide.index = as_daily_index(wide.index)
    first, last = resolve_period(start, end, history_years, wide.index.max(), wide.index.min())
    return _select(wide, tickers, first, last, f"CSV file {path}")
