"""One validation and calendar-alignment path for prices from every source.

Whatever the source (the bundled sample, Yahoo Finance, a user's CSV), prices pass through
the same checks, so a hole, a duplicate or a bad tick is treated the same way everywhere
and reported by name rather than silently repaired.

Rules:

- dates are calendar days (tz-naive, midnight): a price belongs to the exchange's local day;
- duplicate dates keep the last row; unsorted dates are sorted;
- non-numeric, infinite, zero or negative prices are treated as missing, then handled like
  any other hole: carried forward for at most `max_fill_days` rows, never filled backwards
  (a backward fill would copy a later price into the past);
- the calendar is the union of the assets' trading days, so a day on which one market is
  closed repeats that market's last price (a zero return) instead of shifting its returns.
"""

import warnings

import numpy as np
import pandas as pd

from roicast.errors import DataError, RoicastWarning

SUSPICIOUS_MOVE_PCT = 25.0
"""A daily move larger than this (in %) is flagged for a look: a split, a bad tick, a crash."""

_SHOWN = 3


def _listed(items: list, limit: int = _SHOWN) -> str:
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _day(value: pd.Timestamp) -> str:
    return value.strftime("%Y-%m-%d")


def _warn(message: str) -> None:
    warnings.warn(message, RoicastWarning, stacklevel=3)


def as_daily_index(index: pd.Index) -> pd.DatetimeIndex:
    """Dates as tz-naive midnights named "date", keeping each timestamp's own local day."""
    index = pd.DatetimeIndex(index)
    if index.tz is not None:
        index = index.tz_localize(None)
    return index.normalize().rename("date")


def _local_day(value: object) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return pd.NaT
    return stamp.tz_localize(None) if stamp.tz is not None else stamp


def parse_dates(values: pd.Series) -> pd.DatetimeIndex:
    """Parse a column of date strings; unparseable entries become NaT.

    Mixed formats are tried element by element, and mixed UTC offsets keep each row's local
    day, which is the trading day the price belongs to.
    """
    try:
        parsed = pd.to_datetime(values, errors="coerce")
        if parsed.isna().sum() > values.isna().sum():
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    except (ValueError, TypeError):
        parsed = pd.to_datetime(pd.Series([_local_day(v) for v in values]), errors="coerce")
    return as_daily_index(parsed)


def _resolve_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    duplicated = frame.index.duplicated(keep=False)
    if not duplicated.any():
        return frame
    dupes = frame[duplicated]
    dates = sorted(set(dupes.index))
    differing = [str(a) for a in frame.columns
                 if (dupes[a].groupby(level=0).nunique(dropna=False) > 1).any()]
    detail = f"; values differ for {_listed(differing)}" if differing else " (identical rows)"
    _warn(f"{len(dates)} duplicate date(s) ({_listed([_day(d) for d in dates])}): kept the last "
          f"row of each{detail}.")
    return frame[~frame.index.duplicated(keep="last")]


def _to_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    numbers = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    coerced = numbers.isna() & frame.notna()
    for asset in frame.columns[coerced.any()]:
        bad = frame.index[coerced[asset]]
        _warn(f"{asset}: {len(bad)} non-numeric value(s) treated as missing "
              f"(first on {_listed([_day(d) for d in bad])}).")
    return numbers


def _drop_impossible(frame: pd.DataFrame) -> pd.DataFrame:
    values = frame.to_numpy()
    with np.errstate(invalid="ignore"):
        bad = pd.DataFrame(np.isinf(values) | (values <= 0), index=frame.index,
                           columns=frame.columns)
    for asset in frame.columns[bad.any()]:
        dates = frame.index[bad[asset]]
        _warn(f"{asset}: {len(dates)} zero, negative or infinite price(s) treated as missing "
              f"(first on {_listed([_day(d) for d in dates])}); a price must be positive.")
    return frame.mask(bad)


def validate_prices(frame: pd.DataFrame) -> pd.DataFrame:
    """Check and repair a wide price frame (dates × assets); warn about every repair.

    Returns float prices on a sorted, duplicate-free daily index, with impossible values as
    NaN and assets without a single usable price dropped. Raises `DataError` when nothing
    usable remains.
    """
    if frame.shape[1] == 0 or len(frame) == 0:
        raise DataError("No prices to validate: the source returned an empty table.")
    frame = frame.copy()
    frame.index = as_daily_index(frame.index)
    frame.columns = [str(c) for c in frame.columns]
    if frame.index.isna().any():
        frame = frame[frame.index.notna()]
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index(kind="stable")
    frame = _resolve_duplicates(frame)
    frame = _drop_impossible(_to_numbers(frame))
    empty = [a for a in frame.columns if frame[a].isna().all()]
    if empty:
        _warn(f"No usable prices for {_listed(empty, limit=20)}; dropped.")
        frame = frame.drop(columns=empty)
    if frame.shape[1] == 0:
        raise DataError("No asset has a single usable (positive, numeric) price. "
                        "Check the source, the tickers and the dates.")
    return frame


def align_calendar(frame: pd.DataFrame, max_fill_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Put all assets on one calendar; return (prices, missing mask).

    The calendar is the union of the assets' dates; days on which no asset has a price are
    dropped. Holes are carried forward over at most `max_fill_days` rows and never filled
    backwards, so an asset that starts late keeps its leading NaN and one that stops keeps
    NaN after the limit. The mask is True wherever a price was not observed.
    """
    frame = frame.dropna(how="all")
    missing = frame.isna()
    prices = frame.ffill(limit=max_fill_days) if max_fill_days > 0 else frame.copy()
    return prices, missing


def _longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of True values."""
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def _asset_row(observed: pd.Series, filled: pd.Series, missing: pd.Series) -> dict:
    seen = observed.dropna()
    first, last = seen.index[0], seen.index[-1]
    moves = 100 * seen.pct_change().iloc[1:].abs()
    has_moves = len(moves) > 0 and moves.notna().any()
    biggest = float(moves.max()) if has_moves else 0.0
    return {
        "first_date": first,
        "last_date": last,
        "rows": len(seen),
        "filled_days": int((missing & filled.notna()).sum()),
        "still_missing": int(filled.isna().sum()),
        "longest_gap": _longest_run(missing.loc[first:].to_numpy()),
        "stale_days": _longest_run((seen.diff().iloc[1:] == 0).to_numpy()),
        "max_abs_move_pct": biggest,
        "max_move_date": moves.idxmax() if has_moves else pd.NaT,
        "suspicious_jump": biggest > SUSPICIOUS_MOVE_PCT,
    }


def asset_report(raw_aligned: pd.DataFrame, filled: pd.DataFrame,
                 missing: pd.DataFrame) -> pd.DataFrame:
    """One row per asset: coverage, filled and missing days, gaps, stale runs, largest move.

    `longest_gap` counts consecutive unobserved rows after the asset's first price (a late
    start is not a gap; a stop is). `stale_days` is the longest run of unchanged observed
    prices (zero returns). `max_abs_move_pct` is the largest move between consecutive
    observed prices, and `suspicious_jump` flags it above `SUSPICIOUS_MOVE_PCT`.
    """
    rows = {asset: _asset_row(raw_aligned[asset], filled[asset], missing[asset])
            for asset in raw_aligned.columns if raw_aligned[asset].notna().any()}
    report = pd.DataFrame.from_dict(rows, orient="index")
    report.index.name = "asset"
    return report
