"""The collect stage (notebook 01): prices from the chosen source, checked, on one calendar.

Each source (the bundled sample, Yahoo Finance, a CSV) only reads; everything after that is
shared: missing tickers are handled by `on_missing`, prices are validated and aligned by
`cleaning`, and every repair is both warned about and recorded in collect.json.
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from roicast import config
from roicast.config import RunParams
from roicast.data import cleaning, sources, yahoo
from roicast.errors import DataError, RoicastWarning
from roicast.runs import artefacts, store

MIN_ROWS = 30
"""Fewest trading days collect accepts; the model needs far more (seq_len + test period)."""


@dataclass
class CollectResult:
    """Aligned prices (dates × assets), the mask of unobserved prices, and collect.json."""

    prices: pd.DataFrame
    missing: pd.DataFrame
    info: dict


@contextmanager
def _passing_on_warnings() -> Iterator[list[str]]:
    """Record the RoicastWarnings raised inside (for collect.json), then show every warning."""
    messages: list[str] = []
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
    finally:
        for warning in caught:
            if issubclass(warning.category, RoicastWarning):
                messages.append(str(warning.message))
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)


def _available_hint(params: RunParams) -> str:
    if params.source == "sample":
        return f"The bundled sample has: {', '.join(sources.sample_tickers())}."
    if params.source == "csv":
        return f"Check the asset names in {params.csv_path} (case does not matter)."
    return "Check each symbol on finance.yahoo.com (e.g. RELIANCE.NS, GC=F, ^NSEI)."


def _read(params: RunParams) -> tuple[pd.DataFrame, list[str] | None, dict]:
    """Raw prices, the tickers asked for (None: all the source has), source-specific info."""
    if params.source == "sample":
        frame = sources.read_sample(params.tickers, params.start, params.end,
                                    params.history_years)
        return frame, params.tickers, {}
    if params.source == "csv":
        frame = sources.read_csv_prices(params.csv_path, params.csv_date_column, params.tickers,
                                        params.start, params.end, params.history_years,
                                        date_format=params.csv_date_format,
                                        decimal=params.csv_decimal, ticker=params.csv_ticker)
        return frame, params.tickers, {"csv_path": params.csv_path}
    tickers = params.tickers or list(config.DEFAULT_YAHOO_TICKERS)
    today = pd.Timestamp(datetime.now(UTC).date())
    start, end = sources.resolve_period(params.start, params.end, params.history_years, today)
    frame, info = yahoo.fetch_prices(tickers, start, end)
    return frame, tickers, {"yahoo": info}


def _handle_missing(params: RunParams, missing: list[str], hint: str) -> None:
    if not missing:
        return
    if params.on_missing == "error":
        raise DataError(f"No prices for {', '.join(missing)}. {hint} Fix or remove these "
                        "tickers, or set on_missing='drop' to continue without them.")
    warnings.warn(f"No prices for {', '.join(missing)}; continuing without them. {hint}",
                  RoicastWarning, stacklevel=3)


def _warn_jumps(report: pd.DataFrame) -> None:
    jumps = report[report["suspicious_jump"]]
    if len(jumps):
        listed = ", ".join(f"{asset} {row.max_abs_move_pct:.0f} % on {row.max_move_date:%Y-%m-%d}"
                           for asset, row in jumps.iterrows())
        warnings.warn(f"Daily moves above {cleaning.SUSPICIOUS_MOVE_PCT:.0f} %: {listed}. Check "
                      "for an unadjusted split or a bad price.", RoicastWarning, stacklevel=3)


def _iso(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return None if value is pd.NaT else value


def collect_prices(params: RunParams) -> CollectResult:
    """Read, validate and align the prices the parameters ask for.

    Raises `DataError` when a ticker is missing and `on_missing='error'`, when fewer than
    `min_assets` assets or `MIN_ROWS` days remain, or when the source has nothing usable.
    """
    with _passing_on_warnings() as messages:
        raw, requested, extra = _read(params)
        hint = _available_hint(params)
        if raw.shape[1] == 0:
            raise DataError(f"None of the requested tickers ({', '.join(requested or [])}) "
                            f"has prices. {hint}")
        _handle_missing(params, sources.missing_assets(requested, list(raw.columns)), hint)
        checked = cleaning.validate_prices(raw)
        dropped = [str(c) for c in raw.columns if str(c) not in checked.columns]
        if dropped and params.on_missing == "error":
            raise DataError(f"No usable prices for {', '.join(dropped)} (on_missing='error'). "
                            "Remove these tickers or set on_missing='drop'.")
        if checked.shape[1] < params.min_assets:
            raise DataError(f"Only {checked.shape[1]} asset(s) with prices "
                            f"({', '.join(checked.columns)}), fewer than min_assets="
                            f"{params.min_assets}. Add tickers or lower min_assets.")
        prices, missing = cleaning.align_calendar(checked, params.max_fill_days)
        if len(prices) < MIN_ROWS:
            raise DataError(f"Only {len(prices)} trading day(s) of prices between "
                            f"{prices.index.min():%Y-%m-%d} and {prices.index.max():%Y-%m-%d}; "
                            f"collect needs at least {MIN_ROWS} (the model far more). "
                            "Use an earlier start or a larger history_years.")
        report = cleaning.asset_report(prices.mask(missing), prices, missing)
        _warn_jumps(report)
    wanted = requested or list(raw.columns)
    info = {
        "source": params.source,
        "tickers_requested": wanted,
        "assets": list(prices.columns),
        "missing_tickers": sources.missing_assets(wanted, list(prices.columns)),
        "start": prices.index.min().strftime("%Y-%m-%d"),
        "end": prices.index.max().strftime("%Y-%m-%d"),
        "rows": len(prices),
        "max_fill_days": params.max_fill_days,
        "per_asset": [{key: _iso(value) for key, value in row.items()}
                      for row in report.reset_index().to_dict(orient="records")],
        "warnings": messages,
        **extra,
    }
    return CollectResult(prices=prices, missing=missing, info=info)


def write_collect_outputs(run_dir: Path, result: CollectResult) -> None:
    """Write prices.parquet (index "date") and collect.json into the run folder."""
    prices = result.prices.copy()
    prices.index.name = "date"
    artefacts.write_parquet(store.artefact_path(run_dir, "01_collect", store.PRICES), prices)
    artefacts.write_json(store.artefact_path(run_dir, "01_collect", store.COLLECT_INFO), result.info)


def asset_summary(result: CollectResult) -> pd.DataFrame:
    """One row per asset (dates, filled and missing days, gaps, largest move) for display."""
    return pd.DataFrame(result.info["per_asset"]).set_index("asset")
