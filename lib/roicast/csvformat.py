"""How a user's CSV file is written, read from the file itself and never guessed silently.

Spreadsheets save CSV in their locale: semicolons and decimal commas in much of Europe,
Windows-1252 text, day-first dates, Excel serial day numbers. Each of these is recognised
from the file, with a warning wherever the reading is a choice, or the `DataError` names
the parameter that settles it (`csv_date_format`, `csv_decimal`). No pandas or codec
exception reaches the user.

Only the file's first rows and a spread sample of its distinct dates are inspected, so
a file of a million rows is read in seconds.
"""

import codecs
import csv
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from roicast.cleaning import as_daily_index, parse_dates
from roicast.errors import DataError, RoicastWarning

HEAD_BYTES = 64 * 1024
"""Bytes read to decide the encoding, the delimiter and the decimal mark."""
SNIFF_LINES = 50
DELIMITERS = ",;\t|"
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
"""Tried in order when a file is not UTF-8: Excel on Windows writes cp1252; latin-1 reads any byte."""
DATE_SAMPLE = 10_000
"""Distinct dates inspected to choose between day-first and month-first."""
EXCEL_SERIALS = (61, 73051)
"""Excel's day numbers from 1900-03-01 (before it, Excel's 1900 leap-year bug shifts them) to 2100-01-01."""
EXCEL_EPOCH = "1899-12-30"

_NUMBER = re.compile(r"\d+(\.\d+)?")
_DAY_MONTH = re.compile(r"\d{1,2}(?P<sep>[/.-])\d{1,2}(?P=sep)(?P<year>\d{4}|\d{2})(?!\d)")
_COMMA_DECIMAL = re.compile(r"[-+]?(\d{1,3}(\.\d{3})+|\d+),\d+")
_DOT_DECIMAL = re.compile(r"[-+]?(\d{1,3}(,\d{3})+|\d+)\.\d+")
_BINARY_KINDS = {b"PK\x03\x04": "an Excel workbook (.xlsx) or another zip file",
                 b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls)"}


@dataclass(frozen=True)
class Dialect:
    """What pandas needs to know to read the file."""

    encoding: str
    delimiter: str
    decimal: str
    thousands: str | None


def _warn(message: str) -> None:
    warnings.warn(message, RoicastWarning, stacklevel=4)


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
    if not head:
        raise DataError(f"CSV file {path} is empty (0 bytes). Check csv_path, or export the "
                        "prices again.")
    kind = next((name for magic, name in _BINARY_KINDS.items() if head.startswith(magic)), None)
    if kind:
        raise DataError(f"{path} is {kind}, not a CSV file. Save it as CSV (in Excel: "
                        "File > Save As > CSV UTF-8) and point csv_path at that file.")
    return head


def _decode_head(path: Path, head: bytes) -> tuple[str, str]:
    """The encoding the head decodes in, and its text; a partial last character is left out."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates: tuple[str, ...] = ("utf-16",)
    elif b"\x00" in head:
        raise DataError(f"{path} is not a text file (it holds NUL bytes). Export the prices as CSV.")
    else:
        candidates = ("utf-8-sig", *FALLBACK_ENCODINGS)
    for encoding in candidates:
        try:
            decoder = codecs.getincrementaldecoder(encoding)()
            return encoding, decoder.decode(head, final=len(head) < HEAD_BYTES)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path} is in no encoding roicast knows (UTF-8, UTF-16, cp1252, latin-1). "
                    "Save it as CSV UTF-8.")


def _delimiter(lines: list[str]) -> str:
    """The field delimiter among `DELIMITERS`; a comma when the lines hold none (one column).

    csv.Sniffer is told which delimiters to consider: left free (as pandas' sep=None leaves
    it) it splits a lone header such as "Date" at a letter.
    """
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _decimal_mark(rows: list[str], delimiter: str) -> str:
    """',' when fields are not comma-separated and numbers carry commas but never a decimal point."""
    if delimiter == ",":
        return "."
    fields = [field.strip().strip('"') for row in rows for field in row.split(delimiter)]
    commas = any(_COMMA_DECIMAL.fullmatch(field) for field in fields)
    points = any(_DOT_DECIMAL.fullmatch(field) for field in fields)
    return "," if commas and not points else "."


def sniff(path: Path, decimal: str | None) -> Dialect:
    """Encoding, delimiter and decimal mark of a CSV file, from its first rows.

    `decimal` (csv_decimal) overrides the detected mark. With a decimal comma, '.' groups
    thousands ("1.234,56"), as in every locale that writes decimal commas.
    """
    encoding, text = _decode_head(path, _head(path))
    if encoding in FALLBACK_ENCODINGS:
        _warn(f"{path.name} is not UTF-8; read as {encoding}. Save it as CSV UTF-8 to be sure "
              "of every character.")
    lines = [line for line in text.splitlines()[:SNIFF_LINES] if line.strip()]
    delimiter = _delimiter(lines)
    mark = decimal or _decimal_mark(lines[1:], delimiter)
    return Dialect(encoding, delimiter, mark, "." if mark == "," else None)


def read(path: Path, dialect: Dialect, **options) -> tuple[pd.DataFrame, Dialect]:
    """The table, read by pandas in `dialect` (`options` go to pd.read_csv), and the dialect
    that read it.

    A file whose first rows are UTF-8 but whose later ones are not is read again as cp1252,
    then latin-1, with a warning; the dialect returned then names that encoding. With
    `index_col=False` a row with a trailing delimiter cannot shift its dates into an index.
    """
    encodings = [dialect.encoding, *(e for e in FALLBACK_ENCODINGS if e != dialect.encoding)]
    if dialect.encoding == "utf-16":
        encodings = ["utf-16"]
    for encoding in encodings:
        try:
            table = pd.read_csv(path, sep=dialect.delimiter, decimal=dialect.decimal,
                                thousands=dialect.thousands, encoding=encoding, index_col=False,
                                **options)
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError:
            raise DataError(f"CSV file {path} holds no data: no header, no rows.") from None
        except (pd.errors.ParserError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[-1]
            raise DataError(f"{path} is not a CSV roicast can read with fields separated by "
                            f"{dialect.delimiter!r}: {reason}. Every row needs as many fields as "
                            "the header.") from None
        if encoding != dialect.encoding:
            _warn(f"{path.name} is not UTF-8 throughout; read as {encoding}. Save it as CSV "
                  "UTF-8 to be sure of every character.")
        return table, replace(dialect, encoding=encoding)
    raise DataError(f"Cannot decode {path}. Save it as CSV UTF-8.")


def _spread_sample(uniques: pd.Series, size: int = DATE_SAMPLE) -> pd.Series:
    if len(uniques) <= size:
        return uniques
    return uniques.iloc[np.unique(np.linspace(0, len(uniques) - 1, size).astype(int))]


def _parse(values: pd.Series, date_format: str, where: str) -> pd.Series:
    try:
        return pd.to_datetime(values, format=date_format, errors="coerce")
    except ValueError as exc:
        raise DataError(f"{where}: dates such as {values.dropna().iloc[0]!r} cannot be read with "
                        f"the format {date_format!r} ({exc}). Write them as YYYY-MM-DD, or give "
                        "the right format with csv_date_format.") from None


def _ordered(date_format: str) -> str:
    return "day-first" if date_format.index("%d") < date_format.index("%m") else "month-first"


def _swapped(date_format: str) -> str:
    return date_format.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def _formats_of(example: str) -> tuple[str, str]:
    """The two readings of a date like 03/01/2022: month-first first, then day-first."""
    match = _DAY_MONTH.match(example)
    year = "%Y" if len(match["year"]) == 4 else "%y"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas' note that it read a day first
        guessed = guess_datetime_format(example, dayfirst=False)
    month_first = f"%m{match['sep']}%d{match['sep']}{year}"
    if guessed and "%d" in guessed and "%m" in guessed:
        month_first = guessed if _ordered(guessed) == "month-first" else _swapped(guessed)
    return month_first, _swapped(month_first)


def _trading_days(dates: pd.Series) -> bool:
    """Whether the distinct dates are consecutive trading days: weekdays, no gap above a week."""
    days = pd.DatetimeIndex(dates.dropna().unique()).sort_values()
    if len(days) < 2:
        return False
    gaps = (days[1:] - days[:-1]).days
    return bool((days.day_of_week < 5).all() and gaps.max() <= 7)


def _only_reading(uniques: pd.Series, formats: tuple[str, str], where: str) -> str | None:
    """The only reading of `uniques` that is possible, or None when both are.

    A day above 12 rules the other reading out; values only one reading fails on, in both
    directions, mean the file mixes them.
    """
    readings = [_parse(uniques, f, where) for f in formats]
    only = [readings[i].notna() & readings[1 - i].isna() for i in (0, 1)]
    if only[0].any() and only[1].any():
        raise DataError(f"{where} mixes month-first and day-first dates (e.g. "
                        f"{uniques[only[0]].iloc[0]!r} and {uniques[only[1]].iloc[0]!r}). Write "
                        "them all one way, best YYYY-MM-DD.")
    if only[0].any() or only[1].any():
        return formats[0] if only[0].any() else formats[1]
    if readings[0].equals(readings[1]):
        return formats[0]
    return None


def _day_or_month_first(uniques: pd.Series, example: str, where: str) -> str:
    """The format of dates like `example` (03/01/2022): a day above 12 decides, else the only
    reading that gives consecutive trading days, else the user (csv_date_format).

    The spread sample decides almost every file; all distinct dates are read only when it
    cannot.
    """
    formats = _formats_of(example)
    sample = _spread_sample(uniques)
    for candidates in (sample, uniques)[: 1 + (len(uniques) > len(sample))]:
        chosen = _only_reading(candidates, formats, where)
        if chosen is not None:
            return chosen
    plausible = [f for f in formats if _trading_days(_parse(uniques, f, where))]
    if len(plausible) == 1:
        _warn(f"{where}: no day in dates such as {example!r} is above 12; read them "
              f"{_ordered(plausible[0])} ({plausible[0]}), the only reading under which they are "
              "consecutive trading days. Set csv_date_format to say so yourself.")
        return plausible[0]
    raise DataError(f"{where}: cannot tell whether dates such as {example!r} are day-first or "
                    "month-first: no day is above 12 and both readings are possible. Pass "
                    f"csv_date_format, e.g. -p csv_date_format '{formats[1]}' (day-first) or "
                    f"'{formats[0]}' (month-first).")


def _number_dates(values: pd.Series, sample: pd.Series, where: str) -> pd.Series:
    """Dates written as numbers: YYYYMMDD, or Excel's serial day numbers (with a warning)."""
    if sample.str.len().eq(8).all():
        parsed = pd.to_datetime(values, format="%Y%m%d", errors="coerce")
        if parsed.notna().any():
            return parsed
    numbers = pd.to_numeric(values, errors="coerce")
    low, high = EXCEL_SERIALS
    if numbers.dropna().between(low, high).all():
        dates = pd.to_datetime(numbers, unit="D", origin=EXCEL_EPOCH)
        first = numbers.first_valid_index()
        _warn(f"{where} holds numbers, read as Excel serial day numbers ({numbers[first]:g} = "
              f"{dates[first]:%Y-%m-%d}). Format the column as dates (YYYY-MM-DD) before "
              "exporting to be sure.")
        return dates
    raise DataError(f"{where} holds numbers such as {sample.iloc[0]}, not dates: neither YYYYMMDD "
                    f"nor Excel serial day numbers ({low} to {high}). Write the dates as YYYY-MM-DD "
                    "(Unix timestamps too), or name the date column with csv_date_column.")


def read_dates(values: pd.Series, date_format: str | None, where: str) -> pd.DatetimeIndex:
    """Parse a CSV's date column (as text) into calendar days; unreadable entries become NaT.

    With `date_format` (csv_date_format) that format alone is used. Otherwise: numbers are
    YYYYMMDD or Excel serial days; dates like 03/01/2022 are read day-first or month-first
    as the data decides (see `_day_or_month_first`); anything else (ISO dates, month names,
    UTC offsets) is left to pandas, for which it is unambiguous.
    """
    if date_format is not None:
        parsed = _parse(values, date_format, where)
        if parsed.isna().all() and values.notna().any():
            raise DataError(f"{where}: no date matches csv_date_format {date_format!r} (the first "
                            f"is {values.dropna().iloc[0]!r}).")
        return as_daily_index(parsed)
    uniques = pd.Series(values.dropna().unique()).astype(str)
    sample = _spread_sample(uniques)
    if sample.empty:
        return parse_dates(values)
    if sample.str.fullmatch(_NUMBER).all():
        return as_daily_index(_number_dates(values, sample, where))
    day_month = sample[sample.str.match(_DAY_MONTH)]
    if len(day_month):
        date_format = _day_or_month_first(uniques, day_month.iloc[0], where)
        return as_daily_index(_parse(values, date_format, where))
    return parse_dates(values)


def looks_like_decimal_commas(table: pd.DataFrame) -> str | None:
    """A value of the table written with a decimal comma (e.g. '182,01'), if any."""
    for column in table.columns:
        text = table[column].dropna().astype(str).head(SNIFF_LINES)
        hits = text[text.str.fullmatch(_COMMA_DECIMAL)]
        if len(hits):
            return str(hits.iloc[0])
    return None
