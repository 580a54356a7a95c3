"""Daily prices from Yahoo Finance (yfinance), with a per-ticker cache and retries.

yfinance 1.x returns a (Price, Ticker) column MultiIndex even for one ticker, adjusts
prices by default (`auto_adjust=True`, no 'Adj Close'), treats `end` as exclusive, and
reports a failed ticker by returning an empty or all-NaN frame, logging the reason rather
than raising. This module therefore reads yfinance's log during each call: a network
failure or rate limit becomes an exception that is retried with backoff; anything else
that returns no rows means the ticker has no data.

Every ticker is cached in its own parquet file under `data/cache/yahoo/`, described in
`manifest.json` beside it. A later request downloads only the dates the cache does not
cover yet and merges them in. A download that fails or returns nothing leaves the cached
file untouched; when Yahoo cannot be reached, the cache stands in. Several processes may
share the cache (parallel sweeps): each ticker and the manifest have a lock, and a cache
file that cannot be read is discarded with a warning and fetched again.
"""

import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import filelock
import pandas as pd
import yfinance as yf
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tqdm import TqdmWarning

from roicast import paths
from roicast.data.cleaning import as_daily_index
from roicast.errors import DownloadError, RoicastError, RoicastWarning
from roicast.runs import artefacts

with warnings.catch_warnings():  # without ipywidgets, Jupyter gets text bars: nothing to warn
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

RETRY_ATTEMPTS = 4
RETRY_WAIT = wait_exponential(multiplier=2, min=2, max=30)
"""Backoff between attempts (2, 4, 8 s); tests replace it with `tenacity.wait_none()`."""

MANIFEST = "manifest.json"
LOCK_WAIT_S = 600  # another process may be downloading the same ticker: wait for it, not forever
OFFLINE_ENV = "ROICAST_OFFLINE"
"""Set to 1 to use only the cache, without contacting Yahoo Finance."""

_TRANSIENT = re.compile(r"rate.?limit|too many requests|timed? ?out|timeout|could not resolve|"
                        r"dnserror|connection|curl: \(|failed to perform|temporarily|"
                        r"service unavailable|bad gateway|internal server error", re.IGNORECASE)
_DAY = pd.Timedelta(days=1)


class TransientDownloadError(Exception):
    """yfinance returned nothing because of a network problem; worth another attempt."""


def cache_file(cache: Path, ticker: str) -> Path:
    """The parquet file of one ticker; symbols such as '=' and '^' are percent-encoded."""
    return Path(cache) / f"{quote(ticker.upper(), safe='.-_')}.parquet"


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _yfinance_log() -> Iterator[list[str]]:
    """Collect what yfinance logs (its only report of a failure) instead of printing it."""
    logger = logging.getLogger("yfinance")
    collector = _Collector()
    logger.addHandler(collector)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"yfinance\b")
            yield collector.messages
    finally:
        logger.removeHandler(collector)


def parse_download(raw: pd.DataFrame | None, tickers: list[str]) -> dict[str, pd.DataFrame]:
    """Split a `yf.download` frame into one OHLCV frame per requested ticker.

    Accepts the (Price, Ticker) MultiIndex of `group_by="column"`, the (Ticker, Price) one of
    `group_by="ticker"` and the flat columns of `multi_level_index=False` (one ticker).
    Rows without a close are dropped; a ticker with no rows is left out.
    """
    if raw is None or raw.empty:
        return {}
    if isinstance(raw.columns, pd.MultiIndex):
        levels = [i for i in range(2) if "Close" in raw.columns.get_level_values(i)]
        if not levels:
            return {}
        price_level = levels[0]
        by_ticker = {str(t).upper(): raw.xs(t, axis=1, level=1 - price_level)
                     for t in raw.columns.get_level_values(1 - price_level).unique()}
    else:
        by_ticker = {tickers[0].upper(): raw} if len(tickers) == 1 else {}
    frames = {}
    for ticker in tickers:
        frame = by_ticker.get(ticker.upper())
        if frame is None or "Close" not in frame.columns:
            continue
        frame = frame.drop(columns=["Adj Close"], errors="ignore").astype(float)
        frame.columns = [str(c) for c in frame.columns]
        frame.columns.name = None
        frame.index = as_daily_index(frame.index)
        frame = frame[frame["Close"].notna()]
        frame = frame[~frame.index.duplicated(keep="last")]
        if len(frame):
            frames[ticker] = frame
    return frames


def _retrying() -> Retrying:
    return Retrying(stop=stop_after_attempt(RETRY_ATTEMPTS), wait=RETRY_WAIT, reraise=True,
                    retry=retry_if_exception(lambda exc: not isinstance(exc, RoicastError)))


def _download_once(ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    with _yfinance_log() as log:
        raw = yf.download(ticker, start=start.strftime("%Y-%m-%d"),
                          end=(end + _DAY).strftime("%Y-%m-%d"), auto_adjust=True,
                          group_by="column", progress=False, threads=False, actions=False)
    frame = parse_download(raw, [ticker]).get(ticker)
    if frame is None:
        transient = [m for m in log if _TRANSIENT.search(m)]
        if transient:
            raise TransientDownloadError(transient[-1].strip())
        return pd.DataFrame()
    return frame


def download(ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """OHLCV of one ticker from `start` to `end` inclusive; empty if Yahoo has none.

    Network errors and rate limits are retried `RETRY_ATTEMPTS` times with backoff, then
    re-raised.
    """
    return _retrying()(_download_once, ticker, start, end)


def _lock(cache: Path, name: str) -> filelock.BaseFileLock:
    folder = Path(cache) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(folder / f"{name}.lock", timeout=LOCK_WAIT_S)


def _read_manifest(cache: Path) -> dict:
    path = Path(cache) / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = artefacts.read_json(path)
        if not isinstance(manifest, dict):
            raise ValueError("not a mapping")
        return manifest
    except (OSError, ValueError) as exc:
        warnings.warn(f"The cache manifest {path} is unreadable ({exc}); it is rebuilt from the "
                      "cached files and new downloads.", RoicastWarning, stacklevel=2)
        return {}


def _read_cached(cache: Path, ticker: str) -> pd.DataFrame | None:
    path = cache_file(cache, ticker)
    if not path.exists():
        return None
    try:
        frame = pd.read_parquet(path)
        if "Close" not in frame.columns:
            raise ValueError("no Close column")
    except Exception as exc:  # any unreadable file: pyarrow raises several kinds
        warnings.warn(f"The cached prices of {ticker} ({path}) are unreadable ({exc}); "
                      "discarded and fetched again.", RoicastWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return None
    return frame if len(frame) else None


def _coverage(entry: dict | None, cached: pd.DataFrame | None
              ) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """Dates the cache has asked Yahoo about: the manifest's record, else the cached rows."""
    if cached is None:
        return None
    if entry and entry.get("covered_start") and entry.get("covered_end"):
        return pd.Timestamp(entry["covered_start"]), pd.Timestamp(entry["covered_end"])
    return cached.index.min(), cached.index.max()


def missing_ranges(covered: tuple[pd.Timestamp, pd.Timestamp] | None, start: pd.Timestamp,
                   end: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Date ranges (inclusive) to download so the cache covers `start`..`end` without holes."""
    if covered is None:
        return [(start, end)]
    low, high = covered
    gaps = []
    if start < low:
        gaps.append((start, low - _DAY))
    if end > high:
        gaps.append((high + _DAY, end))
    return gaps


def _today() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC).date())


def _merge(cached: pd.DataFrame | None, parts: list[pd.DataFrame]) -> pd.DataFrame:
    merged = pd.concat([frame for frame in (cached, *parts) if frame is not None])
    merged = merged[~merged.index.duplicated(keep="last")].sort_index()
    merged.index.name = "date"
    return merged


def _record(cache: Path, manifest: dict, ticker: str, frame: pd.DataFrame,
            covered: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    """Describe the ticker's cache in the manifest: versions, time, rows, dates asked for.

    The manifest is re-read under its lock and only this ticker's entry changes, so two
    processes that fetch different tickers never overwrite each other's entries.
    """
    # Today's bar may still change: it is never counted as covered.
    last_final = max(min(covered[1], _today() - _DAY), covered[0])
    entry = {
        "yfinance_version": yf.__version__,
        "auto_adjust": True,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "first": frame.index.min().strftime("%Y-%m-%d"),
        "last": frame.index.max().strftime("%Y-%m-%d"),
        "rows": len(frame),
        "covered_start": covered[0].strftime("%Y-%m-%d"),
        "covered_end": last_final.strftime("%Y-%m-%d"),
        "file": cache_file(cache, ticker).name,
    }
    with _lock(cache, MANIFEST):
        current = _read_manifest(cache)
        current[ticker.upper()] = entry
        artefacts.write_json(Path(cache) / MANIFEST, current)
    manifest[ticker.upper()] = entry


def _fetch_one(ticker: str, start: pd.Timestamp, end: pd.Timestamp, cache: Path,
               manifest: dict, offline: bool, info: dict, unreachable: str | None
               ) -> pd.Series | None:
    """Close prices of one ticker from the cache and/or Yahoo; None when there are none.

    After one ticker's download failed every retry (`unreachable` holds the error), the
    others are not tried: they would only wait out the same retries. The ticker's lock is
    held throughout, so a second process fetching it waits and then finds it cached.
    """
    with _lock(cache, cache_file(cache, ticker).name):
        manifest.update(_read_manifest(cache))
        return _fetch_locked(ticker, start, end, cache, manifest, offline, info, unreachable)


def _fetch_locked(ticker: str, start: pd.Timestamp, end: pd.Timestamp, cache: Path,
                  manifest: dict, offline: bool, info: dict, unreachable: str | None
                  ) -> pd.Series | None:
    cached = _read_cached(cache, ticker)
    covered = _coverage(manifest.get(ticker.upper()), cached)
    gaps = [] if offline else missing_ranges(covered, start, end)
    parts, error = [], None
    if gaps and unreachable:
        gaps, error = [], f"not tried after an earlier failure ({unreachable})"
    for gap_start, gap_end in gaps:
        try:
            part = download(ticker, gap_start, gap_end)
        except Exception as exc:  # after the retries: fall back to the cache
            error = f"{type(exc).__name__}: {exc}"
            break
        if len(part):
            parts.append(part)
    frame = cached
    if error is not None:
        info["failed"][ticker] = error
    elif gaps and (parts or cached is not None):
        bounds = [start, end, *(covered or ())]
        if parts:
            frame = _merge(cached, parts)
            artefacts.write_parquet(cache_file(cache, ticker), frame)
        _record(cache, manifest, ticker, frame, (min(bounds), max(bounds)))
    if parts:
        info["downloaded"].append(ticker)
    elif cached is not None:
        info["from_cache"].append(ticker)
    if frame is None:
        if error is None:
            info["returned_nothing"].append(ticker)
        return None
    close = frame["Close"].loc[start:end]
    return close if len(close) else None


def fetch_prices(tickers: list[str], start: str | pd.Timestamp, end: str | pd.Timestamp,
                 cache: Path | None = None, offline: bool | None = None
                 ) -> tuple[pd.DataFrame, dict]:
    """Adjusted daily closes of `tickers` from `start` to `end` inclusive, and what happened.

    `offline=True` (or `ROICAST_OFFLINE=1` when None) reads the cache only. The info dict
    lists the tickers downloaded, served from the cache, that returned nothing, that failed
    (with the error) and that are missing altogether, and whether the run used only the
    cache. Raises `DownloadError` when no ticker has any price.
    """
    cache = Path(cache) if cache is not None else paths.cache_dir("yahoo")
    if offline is None:
        offline = os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    manifest = _read_manifest(cache)
    info = {"cache_dir": str(cache), "offline": offline, "downloaded": [], "from_cache": [],
            "returned_nothing": [], "failed": {}, "missing": []}
    closes = {}
    for ticker in tqdm(tickers, desc="Yahoo Finance", unit="ticker"):
        unreachable = next(iter(info["failed"].values()), None)
        close = _fetch_one(ticker, start, end, cache, manifest, offline, info, unreachable)
        if close is None:
            info["missing"].append(ticker)
        else:
            closes[ticker] = close
    info["ran_from_cache"] = offline or bool(closes and info["failed"] and not info["downloaded"])
    _report(info, tickers, cache, closes)
    frame = pd.DataFrame(closes).astype(float)
    frame.index = as_daily_index(frame.index)
    return frame.sort_index(), info


def _report(info: dict, tickers: list[str], cache: Path, closes: dict) -> None:
    """Warn about failures that the cache covered; raise if nothing was obtained."""
    failed = info["failed"]
    if not closes:
        reason = next(iter(failed.values()), "Yahoo Finance returned no rows")
        where = "offline, and" if info["offline"] else f"({reason}), and there is"
        raise DownloadError(
            f"No prices for {', '.join(tickers)} from Yahoo Finance {where} no cached copy in "
            f"{cache}. Check the tickers on finance.yahoo.com and your connection, or use the "
            "bundled dataset (`-p source sample`) or your own file "
            "(`-p source csv -p csv_path FILE`).")
    stale = [t for t in failed if t in closes]
    if info["ran_from_cache"] and not info["offline"]:
        through = max(close.index.max() for close in closes.values())
        warnings.warn(f"Yahoo Finance could not be reached ({next(iter(failed.values()))}); "
                      f"running from the cache in {cache}, with prices up to "
                      f"{through:%Y-%m-%d}.", RoicastWarning, stacklevel=3)
    elif stale:
        through = ", ".join(f"{t} up to {closes[t].index.max():%Y-%m-%d}" for t in stale)
        warnings.warn(f"Could not update {', '.join(stale)} ({failed[stale[0]]}); using the "
                      f"cached prices ({through}).", RoicastWarning, stacklevel=3)
