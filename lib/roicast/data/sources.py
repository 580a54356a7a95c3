"""Read prices from the bundled sample or from a user's CSV file into one wide layout.

Every reader returns a frame with a "date" DatetimeIndex (tz-naive midnights), one float
column per asset named as in the source, and only the requested assets that exist there.
Requested assets that the source lacks are simply absent: `missing_assets` names them and
the collect stage decides, through `on_missing`, whether that is an error.
"""

import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from roicast import paths
from roicast.data import csvformat
from roicast.data.cleaning import as_daily_index, parse_dates
from roicast.errors import DataError, RoicastWarning

DATE_NAMES = ("date", "datetime", "timestamp", "time", "day")
TICKER_NAMES = ("ticker", "symbol", "asset")
PRICE_NAMES = ("adj close", "adj_close", "adjclose", "adjusted close", "close", "price")
"""Price columns of a long CSV in order of preference: adjusted prices first."""
OHLCV_NAMES = ("open", "high", "low", "volume", "vol.", "change %", "dividends", "stock splits")
"""The other columns of one asset's export (Yahoo's, Investing.com's, a broker's): never assets
themselves."""
HEAD_ROWS = 100
"""Rows read first to find the date column."""


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


def _load(path: Path, date_column: str | None) -> tuple[pd.DataFrame, str, str]:
    """The file's table as text, its date column and its delimiter."""
    head, dialect = csvformat.read(path, csvformat.sniff(path), nrows=HEAD_ROWS)
    if head.empty:
        raise DataError(f"CSV file {path} holds no rows.")
    date_col = _date_column(head, date_column, path)
    if head.shape[1] == 1:
        raise DataError(f"{path} holds only its date column '{date_col}', no prices. A CSV needs "
                        "one price column per asset (wide), or ticker and price columns (long).")
    return csvformat.read(path, dialect)[0], date_col, dialect.delimiter


def _dated(table: pd.DataFrame, date_col: str, date_format: str | None, path: Path) -> pd.DataFrame:
    """The table with its date column parsed; rows without a readable date (a footer, a note)
    dropped with a warning that shows one."""
    written = table[date_col]
    table[date_col] = csvformat.read_dates(written, date_format, f"Column '{date_col}' of {path}")
    undated = table[date_col].isna()
    if undated.all():
        raise DataError(f"Column '{date_col}' of {path} holds no readable dates. Use YYYY-MM-DD, "
                        "give their format with csv_date_format, or name the right column with "
                        "csv_date_column.")
    if undated.any():
        shown = written[undated].dropna()
        example = repr(shown.iloc[0]) if len(shown) else "an empty date"
        warnings.warn(f"{path.name}: {int(undated.sum())} row(s) with no readable date in "
                      f"'{date_col}' ignored, e.g. {example} (a footer or note is no price).",
                      RoicastWarning, stacklevel=3)
        table = table[~undated]
    return table


Label = Callable[[str], str]
"""How an error names the file's column behind an asset of the layout."""


def _one_asset(table: pd.DataFrame, date_col: str, path: Path,
               ticker: str | None) -> tuple[pd.DataFrame, Label] | None:
    """One asset's prices when the file holds only one: an OHLCV export or a lone price column.

    The price is Adj Close, else Close (or Price); the asset is named `ticker`
    (csv_ticker), else after the file. None when the file is not of that shape.
    """
    others = [str(c) for c in table.columns if c != date_col]
    price = _find(others, PRICE_NAMES)
    known = set(PRICE_NAMES) | set(OHLCV_NAMES)
    if price is None or any(c.strip().lower() not in known for c in others):
        return None
    name = ticker or path.stem
    if ticker is None:
        warnings.warn(f"{path.name} holds one asset ({', '.join(others)}): its prices are "
                      f"'{price}', named '{name}' after the file. Set csv_ticker to name the asset.",
                      RoicastWarning, stacklevel=3)
    return (table.set_index(date_col)[[price]].set_axis([name], axis=1),
            lambda _: f"column '{price}'")


def _wide(table: pd.DataFrame, date_col: str) -> tuple[pd.DataFrame, Label]:
    """Wide layout: every column besides the date is an asset."""
    wide = table.set_index(date_col)
    wide.columns = [str(c).strip() for c in wide.columns]
    return wide, lambda asset: f"column '{asset}'"


def _pivot_long(table: pd.DataFrame, date_col: str, ticker_col: str, price_col: str,
                path: Path) -> tuple[pd.DataFrame, Label]:
    long = table[[date_col, ticker_col, price_col]].dropna(subset=[ticker_col])
    long = long.assign(**{ticker_col: long[ticker_col].astype(str).str.strip()})
    duplicated = long.duplicated(subset=[date_col, ticker_col], keep="last")
    if duplicated.any():
        warnings.warn(f"{path.name}: {int(duplicated.sum())} repeated (date, {ticker_col}) "
                      "row(s); kept the last of each.", RoicastWarning, stacklevel=3)
        long = long[~duplicated]
    wide = long.pivot(index=date_col, columns=ticker_col, values=price_col)
    wide.columns = [str(c) for c in wide.columns]
    return wide, lambda asset: f"column '{price_col}' of {ticker_col} {asset}"


def _layout(table: pd.DataFrame, date_col: str, path: Path,
            ticker: str | None) -> tuple[pd.DataFrame, Label]:
    """Dates × assets, as text, from a long file, one asset's export, or a wide file, in that
    order; and how to name the file's column behind each asset."""
    others = [c for c in table.columns if c != date_col]
    ticker_col, price_col = _find(others, TICKER_NAMES), _find(others, PRICE_NAMES)
    if ticker_col is None:
        one = _one_asset(table, date_col, path, ticker)
        if one is not None:
            return one
    if ticker is not None:
        raise DataError(f"csv_ticker names the asset of a file that holds one (an export with "
                        f"Open, High, Low, Close, Volume, or a lone price column), but {path} has "
                        f"the columns {', '.join(map(str, table.columns))}. Leave csv_ticker out.")
    if ticker_col is None:
        return _wide(table, date_col)
    if price_col is None:
        raise DataError(f"{path} has a ticker column '{ticker_col}' but no price column "
                        f"(one of: {', '.join(PRICE_NAMES)}). Its columns: "
                        f"{', '.join(map(str, table.columns))}.")
    return _pivot_long(table, date_col, ticker_col, price_col, path)


def read_csv_prices(path: str | Path, date_column: str | None, tickers: list[str] | None,
                    start: str | None, end: str | None, history_years: float | None = None, *,
                    date_format: str | None = None, decimal: str | None = None,
                    ticker: str | None = None) -> pd.DataFrame:
    """Prices from a CSV file in wide or long layout, or one asset's OHLCV export.

    Wide: a date column and one price column per asset. Long: a date column, a ticker
    column (ticker, symbol or asset) and a price column (adj close, close or price), all
    matched case-insensitively. One asset: Open, High, Low, Close, Adj Close, Volume (or a
    lone Close or Price), named `ticker` or after the file. The date column is found by
    name (date, datetime, timestamp, time, day) unless `date_column` names it; its format
    is `date_format` or read from the data (`csvformat.read_dates`). Encoding and delimiter
    come from the file (`csvformat.sniff`); the requested assets' prices are read as the
    numbers written, their decimal mark (`decimal` fixes it) and thousands separator as
    the prices show (`csvformat.numbers`). Without `start`, the period covers
    `history_years` before `end`, or the whole file when `history_years` is None.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"CSV file {path} does not exist. Check csv_path.")
    table, date_col, delimiter = _load(path, date_column)
    text, label = _layout(_dated(table, date_col, date_format, path), date_col, path, ticker)
    text = text[_match(list(text.columns), tickers)]
    wide = csvformat.numbers(text, delimiter, decimal, str(path), label)
    wide.index = as_daily_index(wide.index)
    first, last = resolve_period(start, end, history_years, wide.index.max(), wide.index.min())
    return _select(wide, tickers, first, last, f"CSV file {path}")
