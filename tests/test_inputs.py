"""Inputs that never pass silently wrong (issue 12): a user's CSV in the shapes spreadsheets
and brokers write, parameters the notebooks receive, and how roicast is installed.

Each file here is one a user could hand in; every one is either read right, read with a
warning saying what was decided, or refused with a `DataError` naming what to pass.
"""

import ast
import os
import subprocess
import sys
import tomllib

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from roicast import checkout, collect, csvformat, paths, sources
from roicast.config import RunParams, notebook_params, unknown_names, validate_params
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


def test_quoted_decimal_commas_between_commas_need_csv_decimal(tmp_path, wide):
    prices = wide.round(2)
    path = tmp_path / "quoted.csv"
    write_dated(path, european(prices), "%Y-%m-%d", quoting=1)
    with pytest.raises(DataError, match="decimal commas .*pass csv_decimal ','"):
        read(path)
    pd.testing.assert_frame_equal(read(path, decimal=","), prices, check_freq=False)


def test_a_file_with_only_a_date_column_says_so(tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text("Date\n2022-01-03\n2022-01-04\n")
    with pytest.raises(DataError, match="holds only its date column 'Date', no prices"):
        read(path)


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
    history = ["", "from roicast import artefacts", 'run_id = "interactive"\nwalk_forward_folds = 0',
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
    from roicast import models, training

    params = RunParams(task="direction", lstm_units=[4, 2], attention_heads=1, attention_key_dim=2,
                       dense_units=4)
    model = models.build_model(5, 2, 1, **training.network_arguments(params))
    model.compile(optimizer="adam", loss=models.WeightedBinaryCrossentropy([1, 2], [2, 1]))
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
