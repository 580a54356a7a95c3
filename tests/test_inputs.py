"""Inputs that never pass silently wrong (issue 12): a user's CSV in the shapes spreadsheets
and brokers write, parameters the notebooks receive, and how roicast is installed.

Each file here is one a user could hand in; every one is either read right, read with a
warning saying what was decided, or refused with a `DataError` naming what to pass.
"""

import ast
import csv
import datetime as dt
import os
import re
import subprocess
import sys
import tomllib
import warnings

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roicast import checkout, paths
from roicast.config import RunParams, notebook_params, unknown_names, validate_params
from roicast.data import collect, csvformat, sources
from roicast.errors import DataError, ParameterError, RoicastError, RoicastWarning


@pytest.fixture
def wide(sample_prices) -> pd.DataFrame:
    """40 trading days of two real assets, 2020-06-29 to 2020-08-24."""
    return sample_prices[["AAPL", "KO"]].iloc[:40]


def read(path, **options) -> pd.DataFrame:
    return sources.read_csv_prices(path, None, None, None, None, **options)


def write_dated(path, frame: pd.DataFrame, date_format: str, **to_csv) -> None:
    dated = frame.set_axis(frame.index.strftime(date_format)).rename_axis("Date")
    dated.to_csv(path, **to_csv)


# --- dates: never guessed ---------------------------------------------------------------------

def test_day_first_dates_with_no_day_above_12_are_read_day_first_with_a_warning(tmp_path, wide):
    early = wide.set_axis(pd.bdate_range("2021-01-04", periods=40, name="date")).iloc[:7]
    path = tmp_path / "early_january.csv"
    write_dated(path, early, "%d/%m/%Y")  # 04/01/2021 … 12/01/2021
    with pytest.warns(RoicastWarning, match=r"day-first \(%d/%m/%Y\).*consecutive trading days"):
        prices = read(path)
    assert prices.index.equals(early.index)


def test_a_day_above_12_settles_day_first_without_a_warning(tmp_path, wide, recwarn):
    path = tmp_path / "day_first.csv"
    write_dated(path, wide, "%d/%m/%Y")
    pd.testing.assert_frame_equal(read(path), wide, check_freq=False)
    assert not [w for w in recwarn if issubclass(w.category, RoicastWarning)]


def test_month_first_dates_stay_month_first(tmp_path, wide):
    path = tmp_path / "month_first.csv"
    write_dated(path, wide, "%m/%d/%Y")
    pd.testing.assert_frame_equal(read(path), wide, check_freq=False)


def test_dates_that_stay_ambiguous_stop_and_ask_for_csv_date_format(tmp_path):
    path = tmp_path / "monthly.csv"
    path.write_text("Date,A\n01/02/2022,1\n01/03/2022,2\n01/04/2022,3\n")
    with pytest.raises(DataError, match=r"day-first or month-first.*csv_date_format '%d/%m/%Y'"):
        read(path)
    prices = read(path, date_format="%d/%m/%Y")
    assert list(prices.index.month) == [2, 3, 4]


def test_a_file_mixing_day_first_and_month_first_is_refused(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("Date,A\n13/01/2022,1\n01/14/2022,2\n")
    with pytest.raises(DataError, match="mixes month-first and day-first"):
        read(path)


def test_dates_that_do_not_match_csv_date_format_are_named(tmp_path):
    path = tmp_path / "iso.csv"
    path.write_text("Date,A\n2022-01-03,1\n")
    with pytest.raises(DataError, match="no date matches csv_date_format '%d/%m/%Y'.*2022-01-03"):
        read(path, date_format="%d/%m/%Y")


def test_excel_serial_dates_are_converted_with_a_warning(tmp_path, wide):
    serials = (wide.index - pd.Timestamp(csvformat.EXCEL_EPOCH)).days
    path = tmp_path / "excel.csv"
    wide.set_axis(serials).rename_axis("Date").to_csv(path)
    with pytest.warns(RoicastWarning, match=r"Excel serial day numbers \(44011 = 2020-06-29\)"):
        prices = read(path)
    pd.testing.assert_frame_equal(prices, wide, check_freq=False)


def test_numbers_that_are_no_dates_are_named(tmp_path):
    path = tmp_path / "unix.csv"
    path.write_text("Date,A\n1641168000,1\n1641254400,2\n")
    with pytest.raises(DataError, match="numbers such as 1641168000, not dates"):
        read(path)


# --- shapes spreadsheets and brokers write --------------------------------------------------------

def ohlcv(closes: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"Open": closes * 0.99, "High": closes * 1.01, "Low": closes * 0.98,
                         "Close": closes * 1.1, "Adj Close": closes, "Volume": 1e6},
                        index=closes.index.rename("Date"))


def test_one_tickers_ohlcv_export_is_one_asset_from_adj_close(tmp_path, wide):
    path = tmp_path / "AAPL.csv"
    ohlcv(wide["AAPL"]).to_csv(path)
    with pytest.warns(RoicastWarning, match="'Adj Close', named 'AAPL' after the file.*csv_ticker"):
        prices = read(path)
    pd.testing.assert_frame_equal(prices, wide[["AAPL"]], check_freq=False)


def test_csv_ticker_names_the_asset_and_close_stands_in_for_adj_close(tmp_path, wide):
    path = tmp_path / "export.csv"
    ohlcv(wide["KO"]).drop(columns="Adj Close").to_csv(path)
    params = RunParams(source="csv", csv_path=str(path), csv_ticker="KO", min_assets=1)
    result = collect.collect_prices(params)
    assert list(result.prices.columns) == ["KO"] and result.info["warnings"] == []
    np.testing.assert_allclose(result.prices["KO"], wide["KO"] * 1.1)


def test_csv_ticker_on_a_file_of_several_assets_is_refused(tmp_path, wide):
    path = tmp_path / "wide.csv"
    wide.rename_axis("Date").to_csv(path)
    with pytest.raises(DataError, match="csv_ticker.*Date, AAPL, KO"):
        read(path, ticker="GOLD")


def european(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as a German spreadsheet writes them: 5.123,45."""
    swap = str.maketrans(",.", ".,")
    return frame.map(lambda value: f"{value:,.2f}".translate(swap))


def test_semicolons_with_decimal_commas_are_detected(tmp_path, wide):
    prices = wide.assign(KO=wide["KO"] * 100).round(2)  # KO in the thousands: 5.123,45
    path = tmp_path / "europe.csv"
    write_dated(path, european(prices), "%d.%m.%Y", sep=";")
    pd.testing.assert_frame_equal(read(path), prices, check_freq=False)


def test_quoted_decimal_commas_between_commas_are_read_as_the_data_show(tmp_path, wide):
    prices = wide.round(2)  # '91,23' can only be a decimal comma: no thousands group has 2 digits
    path = tmp_path / "quoted.csv"
    write_dated(path, european(prices), "%Y-%m-%d", quoting=1)
    pd.testing.assert_frame_equal(read(path), prices, check_freq=False)
    with pytest.raises(DataError, match=r"column 'AAPL' holds '88,80' on 2020-06-29, which is not a "
                                        r"number with decimal mark '\.'"):
        read(path, decimal=".")


# --- numbers: each the number in the file, or a DataError naming the cell (issue 24) ----------

def grouped(frame: pd.DataFrame, thousands: str, decimal: str = ".", decimals: int = 3) -> pd.DataFrame:
    """Prices as text with `thousands` between groups of three digits: 1,790.800."""
    def text(value: float) -> str:
        number = f"{value:,.{decimals}f}"
        return number.translate(str.maketrans({",": thousands, ".": decimal}))
    return frame.map(text)


def test_quoted_thousands_separators_keep_every_asset(tmp_path, sample_prices):
    """The issue's file: six assets, four of them above 1,000, quoted as "1,790.800"."""
    prices = sample_prices.iloc[:40, :6].copy()
    prices.iloc[:, :4] *= 20
    prices = prices.round(3)
    path = tmp_path / "thousands.csv"
    grouped(prices, ",").rename_axis("Date").to_csv(path)
    assert '"1,' in path.read_text()
    result = collect.collect_prices(RunParams(source="csv", csv_path=str(path)))
    pd.testing.assert_frame_equal(result.prices, prices, check_freq=False)
    assert result.info["warnings"] == []


@pytest.mark.parametrize("sep, decimal, thousands", [
    (",", ".", "'"), (",", ".", "’"), (",", ".", " "), (";", ",", "."), (";", ",", " "),
    (";", ",", "\u00a0"), (";", ",", "\u2009"), (";", ",", "\u202f"), ("\t", ".", ","),
], ids=["apostrophe", "right-quote", "space", "dot", "space-comma", "nbsp", "thin", "narrow-nbsp",
        "tab-comma"])
def test_thousands_separators_of_every_kind_are_read(tmp_path, wide, sep, decimal, thousands):
    prices = (wide * 100).round(2)
    path = tmp_path / "grouped.csv"
    grouped(prices, thousands, decimal, decimals=2).rename_axis("Date").to_csv(path, sep=sep)
    pd.testing.assert_frame_equal(read(path), prices, check_freq=False)


def test_unquoted_thousands_commas_between_commas_stop_instead_of_losing_digits(tmp_path):
    path = tmp_path / "unquoted.csv"
    path.write_text("Date,A\n2022-01-03,1,790.80\n2022-01-04,1,791.20\n")
    with pytest.raises(DataError, match=r"Line 2 of .* more fields than its header.*Quote every number"):
        read(path)
    path.write_text("Date,A\n2022-01-03,1790.80,\n2022-01-04,1791.20,\n")  # trailing delimiters
    assert read(path)["A"].tolist() == [1790.8, 1791.2]


def test_currency_symbols_before_or_after_a_price_are_dropped(tmp_path):
    path = tmp_path / "money.csv"
    path.write_text("Date;US;EU;GB\n2022-01-03;$1,790.80;1.790,80 €;£ 12.5\n"
                    "2022-01-04;US$ 1,791.20;1.791,20 EUR;GBP 13\n", encoding="utf-8")
    with pytest.raises(DataError, match="'EU' holds '1.790,80 €'"):
        read(path)  # one file, one decimal mark
    path.write_text("Date;US;GB\n2022-01-03;$1,790.80;£ 12.5\n2022-01-04;US$ 1,791.20;GBP 13\n")
    assert read(path).to_dict("list") == {"US": [1790.8, 1791.2], "GB": [12.5, 13.0]}


def test_a_column_name_given_twice_is_refused_naming_it(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("Date,AAPL,AAPL,BAC\n2022-01-03,1,2,3\n")
    with pytest.raises(DataError, match=r"more than one column 'AAPL' \(its columns: Date, AAPL, "
                                        r"AAPL, BAC\)"):
        read(path)


def test_percentages_are_no_prices(tmp_path):
    path = tmp_path / "returns.csv"
    path.write_text("Date,A,B\n2022-01-03,1.5,0.5%\n2022-01-04,1.6,-1.2%\n")
    with pytest.raises(DataError, match="column 'B' holds percentages such as '0.5%', not prices"):
        read(path)


@pytest.mark.parametrize("content, message", [
    ("Date,A,Sector\n2022-01-03,1.5,Tech\n", "column 'Sector' holds 'Tech' on 2022-01-03"),
    ("Date,A\n2022-01-03,1.5\n2022-01-04,1.6.2\n", "column 'A' holds '1.6.2' on 2022-01-04"),
    ("date,ticker,close\n2022-01-03,A,1.5\n2022-01-03,B,#VALUE!\n",
     "column 'close' of ticker B holds '#VALUE!'"),
    ("Date,Open,Close,Volume\n2022-01-03,1,n.a.,10\n", "column 'Close' holds 'n.a.'"),
], ids=["wide-text", "wide-number", "long", "one-asset"])
def test_a_cell_that_is_no_number_stops_naming_its_column_and_the_cell(tmp_path, content, message):
    path = tmp_path / "AAPL.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)), warnings.catch_warnings():
        warnings.simplefilter("ignore", RoicastWarning)
        read(path)


def test_empty_na_and_dash_cells_are_missing_prices(tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("Date,A\n2022-01-03,1.5\n2022-01-04,\n2022-01-05,NA\n2022-01-06,-\n"
                    "2022-01-07,2\n")
    assert read(path)["A"].isna().tolist() == [False, True, True, True, False]


def test_a_mark_the_prices_leave_open_stops_and_asks_for_csv_decimal(tmp_path):
    path = tmp_path / "open.csv"
    path.write_text('Date;A\n2022-01-03;1.234\n2022-01-04;5.678\n')
    with pytest.raises(DataError, match=r"'1.234' read as 1.234 with a decimal point and as 1234 "
                                        r"with a decimal comma.*Pass csv_decimal"):
        read(path)
    assert read(path, decimal=",")["A"].tolist() == [1234, 5678]
    assert read(path, decimal=".")["A"].tolist() == [1.234, 5.678]
    path.write_text('Date,A\n2022-01-03,"1,234"\n2022-01-04,"5,678"\n')
    with pytest.raises(DataError, match="Pass csv_decimal"):
        read(path)
    path.write_text('Date,A,B\n2022-01-03,"1,234",0.5\n')  # another price settles it
    assert read(path).to_dict("list") == {"A": [1234.0], "B": [0.5]}
    path.write_text('Date,A\n2022-01-03,1.234\n2022-01-04,5.678\n')  # between commas: a point
    assert read(path)["A"].tolist() == [1.234, 5.678]


def test_a_footer_row_is_dropped_with_a_warning_showing_it(tmp_path, wide):
    path = tmp_path / "footer.csv"
    wide.rename_axis("Date").to_csv(path)
    with path.open("a") as file:
        file.write("Source: Yahoo Finance; prices in USD,,\n")
    with pytest.warns(RoicastWarning, match=r"1 row\(s\) with no readable date in 'Date' ignored, "
                                            r"e.g. 'Source: Yahoo Finance; prices in USD'"):
        prices = read(path)
    pd.testing.assert_frame_equal(prices, wide, check_freq=False)


# --- property: random prices written in every supported layout read back exactly ----------------

RESERVED = {name.upper() for name in (*sources.DATE_NAMES, *sources.TICKER_NAMES,
                                      *sources.PRICE_NAMES, *sources.OHLCV_NAMES, "NA", "NULL")}
FORMATS = {  # delimiter, decimal mark, thousands separator
    "plain": (",", ".", ""), "quoted-commas": (",", ".", ","), "apostrophe": (",", ".", "'"),
    "tab": ("\t", ".", ","), "semicolon-comma": (";", ",", ""), "semicolon-dots": (";", ",", "."),
    "semicolon-space": (";", ",", " "), "nbsp": (";", ",", "\u00a0"), "thin": (";", ",", "\u2009"),
    "narrow-nbsp": (";", ",", "\u202f"), "right-quote": (",", ".", "’"),
}


def written(units: int | None, decimals: int, decimal: str, thousands: str, money: str) -> str:
    """A price of `units` / 10**decimals as a file writes it: '$1,790.80', '1.790,80'."""
    if units is None:
        return ""
    whole, part = divmod(units, 10**decimals)
    number = f"{whole:,}".replace(",", thousands) + (f"{decimal}{part:0{decimals}d}" if decimals else "")
    return money.replace("#", number)


@st.composite
def price_files(draw):
    assets = draw(st.lists(st.from_regex(r"[A-Z]{1,5}", fullmatch=True).filter(
        lambda name: name not in RESERVED), min_size=1, max_size=4, unique=True))
    days = draw(st.lists(st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31)), min_size=2,
                         max_size=12, unique=True))
    decimals = draw(st.integers(0, 4))
    units = st.integers(1, 10**7) | st.none()  # the price times 10**decimals, or a hole
    table = draw(st.lists(st.lists(units, min_size=len(assets), max_size=len(assets)),
                          min_size=len(days), max_size=len(days)))
    return {"assets": assets, "days": sorted(days), "decimals": decimals, "units": table,
            "layout": draw(st.sampled_from(["wide", "long", "one-asset"])),
            "format": draw(st.sampled_from(sorted(FORMATS))),
            "money": draw(st.sampled_from(["#", "$#", "# €", "USD #"]))}


def write_prices(path, file: dict) -> pd.DataFrame:
    """Write `file` as a CSV in its layout and format; the prices it holds, as floats."""
    sep, decimal, thousands = FORMATS[file["format"]]
    dates = [day.isoformat() for day in file["days"]]
    assets = file["assets"][:1] if file["layout"] == "one-asset" else file["assets"]
    units = [row[: len(assets)] for row in file["units"]]
    text = pd.DataFrame([[written(u, file["decimals"], decimal, thousands, file["money"]) for u in row]
                         for row in units], index=pd.Index(dates, name="Date"), columns=assets)
    if file["layout"] == "long":
        text = text.stack().rename("Close").rename_axis(["Date", "Ticker"]).reset_index()
    elif file["layout"] == "one-asset":
        columns = {name: text[assets[0]] for name in ("Open", "High", "Low", "Close")}
        text = pd.DataFrame(columns).assign(Volume="1000").reset_index()
    else:
        text = text.reset_index()
    text.to_csv(path, sep=sep, index=False, quoting=csv.QUOTE_MINIMAL, encoding="utf-8")
    values = [[np.nan if u is None else float(written(u, file["decimals"], ".", "", "#"))
               for u in row] for row in units]
    return pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="date"), columns=assets)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=price_files())
def test_random_prices_read_back_exactly_in_every_layout_and_format(tmp_path, file):
    path = tmp_path / "prices.csv"
    expected = write_prices(path, file)
    decimal = FORMATS[file["format"]][1]
    ticker = file["assets"][0] if file["layout"] == "one-asset" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RoicastWarning)
        try:
            prices = read(path, ticker=ticker)
        except DataError as error:  # only a file whose every mark could go either way
            assert "Pass csv_decimal" in str(error) and file["decimals"] in (0, 3), error
            prices = read(path, ticker=ticker, decimal=decimal)
    pd.testing.assert_frame_equal(prices[sorted(prices.columns)], expected[sorted(expected.columns)],
                                  check_freq=False, check_names=False)


# --- encodings and files that are no CSV ------------------------------------------------------

def test_a_latin1_file_is_read_with_a_warning(tmp_path, wide):
    path = tmp_path / "latin1.csv"
    wide.rename(columns={"KO": "NESTLÉ"}).rename_axis("Date").to_csv(path, encoding="latin-1")
    with pytest.warns(RoicastWarning, match="not UTF-8; read as cp1252"):
        prices = read(path)
    assert list(prices.columns) == ["AAPL", "NESTLÉ"]


def test_a_file_that_turns_cp1252_after_its_first_rows_is_read_again(tmp_path):
    days = pd.bdate_range("2000-01-03", periods=3500).strftime("%Y-%m-%d")
    rows = [f"{day},AAA,1.5" for day in days] + [f"{day},CAFÉ,2.5" for day in days]
    path = tmp_path / "long.csv"
    path.write_bytes("\n".join(["date,ticker,close", *rows]).encode("cp1252"))
    assert path.read_bytes().find("É".encode("cp1252")) > csvformat.HEAD_BYTES
    with pytest.warns(RoicastWarning, match="not UTF-8 throughout; read as cp1252"):
        prices = read(path)
    assert list(prices.columns) == ["AAA", "CAFÉ"] and len(prices) == 3500


def test_a_utf8_file_with_a_byte_order_mark_is_read_silently(tmp_path, wide, recwarn):
    path = tmp_path / "bom.csv"
    wide.rename_axis("Date").to_csv(path, encoding="utf-8-sig")
    pd.testing.assert_frame_equal(read(path), wide, check_freq=False)
    assert not [w for w in recwarn if issubclass(w.category, RoicastWarning)]


@pytest.mark.parametrize("content, message", [
    (b"", r"is empty \(0 bytes\)"),
    (b"\n\n\n", "holds no data"),
    (b"Date,A\n", "holds no rows"),
    (b"PK\x03\x04\x14\x00\x06\x00", r"Excel workbook \(.xlsx\).*Save it as CSV"),
    (b"\x00\x01\x02binary", "not a text file"),
    (b"Date,A\n2022-01-03,1\n2022-01-04,1,2\n", "Every row needs as many fields as the header"),
], ids=["empty", "blank-lines", "header-only", "xlsx", "binary", "ragged"])
def test_a_file_that_is_no_usable_csv_is_a_data_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read(path)


# --- csv_path: relative to where roicast was run ---------------------------------------------

def test_a_relative_csv_path_starts_from_where_roicast_was_run(tmp_path, monkeypatch, sample_prices):
    sample_prices[["AAPL", "KO"]].to_csv(tmp_path / "prices.csv")
    monkeypatch.chdir(tmp_path)
    params = validate_params({"source": "csv", "csv_path": "prices.csv"})  # the runner, in its process
    assert params.csv_path == str(tmp_path / "prices.csv")
    monkeypatch.chdir(paths.NOTEBOOKS_DIR)  # where papermill starts the kernel
    result = collect.collect_prices(notebook_params(params.model_dump()))
    assert result.prices.shape == (631, 2)


def test_in_jupyterlab_a_relative_csv_path_starts_from_the_repository_root(monkeypatch):
    monkeypatch.chdir(paths.NOTEBOOKS_DIR)
    params = validate_params({"source": "csv", "csv_path": "data/mine.csv"})
    assert params.csv_path == str(paths.REPO_ROOT / "data" / "mine.csv")
    assert validate_params({"source": "csv", "csv_path": "01_collect.ipynb"}).csv_path == str(
        paths.NOTEBOOKS_DIR / "01_collect.ipynb")  # a file notebooks/ holds stays there


# --- names injected into a notebook -----------------------------------------------------------

def test_notebook_params_refuses_a_name_that_is_no_parameter():
    with pytest.raises(ParameterError, match=r"unknown parameter 'seq_lenn' \(did you mean 'seq_len'\?\)"):
        notebook_params({"run_id": "x", "seq_len": 30, "seq_lenn": 30})
    with pytest.raises(ParameterError, match="unknown parameter 'zzz'. Known parameters: .*seq_len"):
        notebook_params({"zzz": [1]})


def test_only_literals_and_not_ipythons_or_private_names_count():
    namespace = {"seq_len": 30, "In": [""], "Out": {}, "exit": None, "_": 3, "__name__": "__main__",
                 "run": paths.REPO_ROOT, "pd": pd}
    assert unknown_names({k: v for k, v in namespace.items() if k != "In"}) == []
    assert notebook_params(namespace).seq_len == 30


def test_in_a_kernel_only_names_set_by_literal_only_cells_count():
    """What a kernel holds in 04_evaluate when papermill injected a typo."""
    history = ["", "from roicast.runs import artefacts", 'run_id = "interactive"\nwalk_forward_folds = 0',
               '# Parameters\nrun_id = "r1"\nwalk_forward_foldz = 3\n',
               'train_info = artefacts.read_json(run / "train.json")\nparams = notebook_params(globals())']
    namespace = {"In": history, "run_id": "r1", "walk_forward_folds": 0, "walk_forward_foldz": 3,
                 "train_info": {"params": {}}}
    assert unknown_names(namespace) == ["walk_forward_foldz"]
    del namespace["walk_forward_foldz"]
    assert notebook_params(namespace).run_id == "r1"


@pytest.mark.parametrize("name", paths.NOTEBOOKS)
def test_no_notebook_sets_a_literal_that_is_no_parameter_before_notebook_params(name):
    cells = [c.source for c in nbformat.read(paths.notebook_path(name), as_version=4).cells
             if c.cell_type == "code"]
    calling = next(i for i, source in enumerate(cells) if "notebook_params(" in source)
    for source in cells[: calling + 1]:
        names = {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
        literal = unknown_names({"In": [source], **dict.fromkeys(names, 0)})
        assert literal == [], f"{name} sets {literal} before notebook_params"


# --- Keras, installs, environments ------------------------------------------------------------

def _python(code: str, cwd) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_import_roicast_is_enough_for_keras_to_load_a_saved_model(tmp_path):
    from roicast.models import hybrid, training

    params = RunParams(task="direction", lstm_units=[4, 2], attention_heads=1, attention_key_dim=2,
                       dense_units=4)
    model = hybrid.build_model(5, 2, 1, **training.network_arguments(params))
    model.compile(optimizer="adam", loss=hybrid.WeightedBinaryCrossentropy([1, 2], [2, 1]))
    path = tmp_path / "model.keras"
    model.save(path)
    load = (f"m = keras.models.load_model({str(path)!r}); "
            "print(type(m.get_layer('attention')).__name__, type(m.loss).__name__)")
    for imports in ("import roicast, keras", "import keras, roicast"):
        assert _python(f"{imports}; {load}", tmp_path).split() == ["SelfAttention",
                                                                     "WeightedBinaryCrossentropy"]


def test_import_roicast_alone_imports_no_keras(tmp_path):
    assert _python("import roicast, sys; print('keras' in sys.modules)", tmp_path).strip() == "False"


def test_an_install_without_the_notebooks_says_to_install_from_a_clone(tmp_path, monkeypatch):
    checkout.require_checkout()
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", tmp_path / "site-packages" / "notebooks")
    with pytest.raises(RoicastError, match=r"notebooks are not installed.*`pip install -e \.`") as caught:
        checkout.require_checkout()
    assert "\n" not in str(caught.value)


def _project() -> dict:
    return tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]


def test_environment_yml_installs_jupyterlab_for_make_lab():
    env = yaml.safe_load((paths.REPO_ROOT / "environment.yml").read_text())
    lab = _project()["optional-dependencies"]["lab"]
    assert any(item.startswith("jupyterlab") for item in lab)
    assert set(lab) <= {item for item in env["dependencies"] if isinstance(item, str)}


def test_keras_is_pinned_to_a_release_without_known_safe_mode_bypasses():
    assert "keras>=3.13,<4" in _project()["dependencies"]
