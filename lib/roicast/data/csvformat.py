"""How a user's CSV file is written, read from the file itself and never guessed silently.

Spreadsheets save CSV in their locale: semicolons and decimal commas in much of Europe,
Windows-1252 text, day-first dates, Excel serial day numbers, thousands separators and
currency symbols. Each of these is recognised from the file, with a warning wherever the
reading is a choice, or the `DataError` names the parameter that settles it
(`csv_date_format`, `csv_decimal`). No pandas or codec exception reaches the user.

Every field is read as text and every price is checked against the one number format the
file's prices allow: a cell that is no number stops the read, naming it, instead of
becoming a missing price. Dates are decided from a spread sample of the distinct dates,
numbers from the distinct prices, so a file of a million rows is read in seconds.
"""

import codecs
import csv
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from roicast.data.cleaning import as_daily_index, parse_dates
from roicast.errors import DataError, RoicastWarning

HEAD_BYTES = 64 * 1024
"""Bytes read to decide the encoding and the delimiter, and to check the header."""
SNIFF_LINES = 50
DELIMITERS = ",;\t|"
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
"""Tried in order when a file is not UTF-8: Excel on Windows writes cp1252; latin-1 reads any byte."""
DATE_SAMPLE = 10_000
"""Distinct dates inspected to choose between day-first and month-first."""
EXCEL_SERIALS = (61, 73051)
"""Excel's day numbers from 1900-03-01 (before it, Excel's 1900 leap-year bug shifts them) to 2100-01-01."""
EXCEL_EPOCH = "1899-12-30"
MISSING = ("-", "–", "—")
"""Dashes some exports write for a missing price; read as missing, like an empty cell or NA."""
CURRENCIES = "$€£¥₹₩₽₺₪₫₱฿¢₣₴₦"
SEPARATORS = ".,' "
"""Marks that may group thousands: the two that may also mark decimals, an apostrophe, a space."""
_SPACES = "[\u00a0\u2009\u202f]"
"""Non-breaking, thin and narrow non-breaking spaces: they group thousands as a space does."""

_NUMBER = re.compile(r"\d+(\.\d+)?")
_DAY_MONTH = re.compile(r"\d{1,2}(?P<sep>[/.-])\d{1,2}(?P=sep)(?P<year>\d{4}|\d{2})(?!\d)")
_MONEY = rf"(?:[A-Z]{{0,3}}[{re.escape(CURRENCIES)}]|[A-Z]{{3}})"
_CURRENCY = re.compile(rf"^{_MONEY}\s*|\s*{_MONEY}$")
"""A currency before or after a number: $, €, US$, R$, or a code such as USD or EUR."""
_BINARY_KINDS = {b"PK\x03\x04": "an Excel workbook (.xlsx) or another zip file",
                 b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls)"}


@dataclass(frozen=True)
class Dialect:
    """What pandas needs to know to read the file."""

    encoding: str
    delimiter: str


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


def _refuse_repeated_names(path: Path, header: str, delimiter: str) -> None:
    """Stop on a column name given twice: pandas would read the second as 'AAPL.1', a new asset."""
    names = [name.strip() for name in next(csv.reader([header], delimiter=delimiter))]
    counts = Counter(name.casefold() for name in names if name)
    repeated = list(dict.fromkeys(name for name in names if counts[name.casefold()] > 1))
    if repeated:
        raise DataError(f"{path} names more than one column {' and '.join(map(repr, repeated))} "
                        f"(its columns: {', '.join(names)}). Give each column its own name, or "
                        "delete the repeated one.")


def sniff(path: Path) -> Dialect:
    """Encoding and delimiter of a CSV file, from its first rows; a header that names a
    column twice is refused."""
    encoding, text = _decode_head(path, _head(path))
    if encoding in FALLBACK_ENCODINGS:
        _warn(f"{path.name} is not UTF-8; read as {encoding}. Save it as CSV UTF-8 to be sure "
              "of every character.")
    lines = [line for line in text.splitlines()[:SNIFF_LINES] if line.strip()]
    delimiter = _delimiter(lines)
    if lines:
        _refuse_repeated_names(path, lines[0], delimiter)
    return Dialect(encoding, delimiter)


def _refuse_lost_values(path: Path, delimiter: str, encoding: str) -> None:
    """Stop at the first row with values beyond the header's fields: pandas would drop them."""
    with path.open(encoding=encoding, newline="") as file:
        rows = csv.reader(file, delimiter=delimiter)
        width = len(next((row for row in rows if row), []))
        for row in rows:
            if any(field.strip() for field in row[width:]):
                raise DataError(f"Line {rows.line_num} of {path} has more fields than its header, "
                                f"separated by {delimiter!r}: its last values would be lost. Quote "
                                f"every number that holds a {delimiter!r} (\"1,790.80\"), or name "
                                "every column in the header.")


def _read_text(path: Path, delimiter: str, encoding: str, **options) -> pd.DataFrame:
    """pd.read_csv with every field as text; a row longer than the header is read only when
    its extra fields are empty (a trailing delimiter)."""
    read_csv = partial(pd.read_csv, path, sep=delimiter, encoding=encoding, index_col=False,
                       dtype=str, na_values=MISSING, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return read_csv()
        except pd.errors.ParserWarning:
            pass
    _refuse_lost_values(path, delimiter, encoding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.ParserWarning)
        return read_csv()


def read(path: Path, dialect: Dialect, **options) -> tuple[pd.DataFrame, Dialect]:
    """The table, every field as text, read by pandas in `dialect` (`options` go to
    pd.read_csv), and the dialect that read it.

    A file whose first rows are UTF-8 but whose later ones are not is read again as cp1252,
    then latin-1, with a warning; the dialect returned then names that encoding. With
    `index_col=False` a row with a trailing delimiter cannot shift its dates into an index;
    a row with values beyond the header's fields, which pandas would cut short, is refused.
    """
    encodings = [dialect.encoding, *(e for e in FALLBACK_ENCODINGS if e != dialect.encoding)]
    if dialect.encoding == "utf-16":
        encodings = ["utf-16"]
    for encoding in encodings:
        try:
            table = _read_text(path, dialect.delimiter, encoding, **options)
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


def _pattern(decimal: str, thousands: str | None) -> re.Pattern:
    """A number with this decimal mark, its digits grouped in thousands (or lakhs: 1,23,456)
    by `thousands` or not grouped."""
    mark = re.escape(decimal)
    integer = r"\d+"
    if thousands:
        group = re.escape(thousands)
        integer = rf"\d{{1,3}}(?:{group}\d{{2,3}})*{group}\d{{3}}|\d+"
    return re.compile(rf"[-+]?(?:(?:{integer})(?:{mark}\d*)?|{mark}\d+)(?:[eE][-+]?\d+)?")


def _describe(decimal: str, thousands: str | None) -> str:
    grouped = f"thousands grouped by {thousands!r}" if thousands else "no thousands separator"
    return f"decimal mark {decimal!r}, {grouped}"


def _convert(bare: pd.Series, reading: tuple[str, str | None]) -> pd.Series:
    """Numbers that match `_pattern(*reading)` as floats."""
    mark, thousands = reading
    plain = bare.str.replace(thousands, "", regex=False) if thousands else bare
    return pd.to_numeric(plain.str.replace(mark, ".", regex=False)).astype(float)


def _number_format(bare: pd.Series, delimiter: str, decimal: str | None,
                   where: str) -> tuple[tuple[str, str | None], pd.Series]:
    """The decimal mark and thousands separator of the file's prices, and the prices that
    are no number under them (none, unless no reading fits every price).

    Each mark found in the prices either marks decimals or groups thousands; the readings
    under which every price is a number remain. When two remain and differ ('1,234' alone:
    1.234 or 1234), a comma-separated file settles a '.' as its decimal point; anything else
    stops and asks for csv_decimal.
    """
    present = {mark for mark in SEPARATORS if bare.str.contains(mark, regex=False).any()}
    readings: dict[str | None, tuple[str, str | None]] = {}
    for mark in [decimal] if decimal else [".", ","]:
        others = present - {mark}
        if len(others) <= 1:
            readings.setdefault(mark if mark in present else None, (mark, next(iter(others), None)))
    if not readings:
        raise DataError(f"{where}: the prices hold the marks {' '.join(map(repr, sorted(present)))}, "
                        "more than one decimal mark and one thousands separator. Write every price "
                        "the same way.")
    misses = {reading: ~bare.str.fullmatch(_pattern(*reading)) for reading in readings.values()}
    fits = [reading for reading, missed in misses.items() if not missed.any()]
    if not fits:
        return min(misses.items(), key=lambda item: int(item[1].sum()))
    point, comma = fits[0], fits[-1]
    if point == comma or (present == {"."} and delimiter == ","):
        return point, misses[point]
    differ = _convert(bare, point) != _convert(bare, comma)
    if not differ.any():
        return point, misses[point]
    example = bare[differ].iloc[:1]
    raise DataError(f"{where}: prices such as {example.iloc[0]!r} read as "
                    f"{_convert(example, point).iloc[0]:g} with a decimal point and as "
                    f"{_convert(example, comma).iloc[0]:g} with a decimal comma, and no price in "
                    "the file tells which. Pass csv_decimal '.' or ',' to say which.")


def numbers(text: pd.DataFrame, delimiter: str, decimal: str | None, where: str,
            label: Callable[[str], str]) -> pd.DataFrame:
    """The prices of `text` (dates × columns of text) as floats, each the number in the file.

    Spaces and a currency ($ 1,234.50, 1.234,50 €, USD 12) around a number are dropped;
    thousands separators and the decimal mark are those `_number_format` finds (`decimal`,
    csv_decimal, fixes the mark). An empty cell, NA or a dash is a missing price; a
    percentage, or anything else that is no number, stops the read with a `DataError` naming
    `label(column)` and the cell. pandas' own `thousands=` is not used: it drops its
    separator wherever it stands ('1.5' read as 15) and takes a single byte (no
    non-breaking space).
    """
    if text.empty:
        return text.astype(float)
    codes, distinct = pd.factorize(pd.concat([text[column] for column in text], ignore_index=True))
    bare = pd.Series(distinct, dtype=str).str.strip()
    money = bare.str.contains(f"[A-Z{re.escape(CURRENCIES)}]")
    bare[money] = bare[money].str.replace(_CURRENCY, "", regex=True)
    bare = bare.str.replace(_SPACES, " ", regex=True).str.replace("’", "'", regex=False)

    def cell(kind: pd.Series) -> tuple[pd.Timestamp, str, str]:
        """Date, column and text of the first cell of `kind` (a mask over the distinct ones)."""
        at = int(np.argmax(codes == kind.argmax()))
        return text.index[at % len(text)], text.columns[at // len(text)], distinct[kind.argmax()]

    percent = bare.str.contains("%", regex=False)
    if percent.any():
        _, column, example = cell(percent)
        raise DataError(f"{where}: {label(column)} holds percentages such as {example!r}, not "
                        "prices. roicast forecasts from prices: export the price column instead.")
    reading, missed = _number_format(bare, delimiter, decimal, where)
    if missed.any():
        date, column, example = cell(missed)
        how = f" with {_describe(*reading)}" if re.search(r"\d", example) else ""
        raise DataError(f"{where}: {label(column)} holds {example!r} on {date:%Y-%m-%d}, which is "
                        f"not a number{how}. Write every price as a number (a missing one as an "
                        "empty cell), set csv_decimal if the decimal mark is wrong, or leave that "
                        "column out.")
    values = np.append(_convert(bare, reading).to_numpy(), np.nan)[codes]
    return pd.DataFrame(values.reshape(text.shape[::-1]).T, index=text.index, columns=text.columns)
