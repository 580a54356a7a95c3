"""A finished run as an MLflow pyfunc model: prices in, the table of `roicast forecast` out.

`mlflow models serve -m <uri> --env-manager local` then answers forecasts over HTTP. The model
carries the run's folder (network, ensemble members, scalers, dataset; not its logs or past
forecasts) and, for every request, writes the posted prices to a CSV and calls
`forecast.make_forecast` with that CSV as `forecast_csv_path`: the very path of
`roicast forecast -p forecast_source csv -p forecast_csv_path FILE`, so the same prices give the
same numbers and a bad table (a missing asset, too few days, a price that is not a number) the
same one-line message, which the scoring server returns with status 400.

It needs roicast importable where it is served (`--env-manager local` in roicast's environment).
"""

import importlib.metadata
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ParamSchema, ParamSpec

from roicast import paths
from roicast.errors import DataError, RoicastError
from roicast.runs import store
from roicast.runs.artefacts import read_json

MODEL_NAME = "forecaster"
LEFT_OUT = (store.LOGS, store.FORECASTS, store.SCRATCH)  # TensorBoard logs, past forecasts, scratch
SIGNATURE = ModelSignature(inputs=None, params=ParamSchema([
    ParamSpec("asof", "string", None),  # YYYY-MM-DD; None: the newest price
    ParamSpec("forecast_days", "long", None),  # None: the run's default (5)
]))
MODEL_CODE = Path(__file__).with_name("served_model.py")
_WORKDIR_LOCK = threading.Lock()  # ROICAST_WORKDIR is process-wide: one forecast at a time


@contextmanager
def _workdir(folder: Path) -> Iterator[None]:
    """ROICAST_WORKDIR pointed at `folder` for the duration: the run's paths resolve inside it."""
    with _WORKDIR_LOCK:
        before = os.environ.get("ROICAST_WORKDIR")
        os.environ["ROICAST_WORKDIR"] = str(folder)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("ROICAST_WORKDIR", None)
            else:
                os.environ["ROICAST_WORKDIR"] = before


def dated(prices: pd.DataFrame) -> pd.DataFrame:
    """The posted table with its dates as a first `date` column in ISO form: from a `date`
    column (any case) or, failing that, a date index."""
    table = prices.copy()
    column = next((c for c in table.columns if str(c).lower() == "date"), None)
    if column is None:
        if not isinstance(table.index, pd.DatetimeIndex):
            raise DataError("The prices need their dates: a 'date' column (YYYY-MM-DD) beside one "
                            "column of prices per asset.")
        table = table.rename_axis("date").reset_index()
        column = "date"
    try:
        dates = pd.to_datetime(table.pop(column).astype(str), format="%Y-%m-%d")
    except (ValueError, TypeError):
        raise DataError("The 'date' column holds something that is not a date in the form "
                        "YYYY-MM-DD.") from None
    table.insert(0, "date", dates.dt.strftime("%Y-%m-%d"))
    return table


def forecast_prices(run_id: str, prices: pd.DataFrame, asof: str | None = None,
                    forecast_days: int | None = None) -> pd.DataFrame:
    """What `roicast forecast --run-id RUN_ID` forecasts from these prices (dates × assets) given
    as a CSV, with `date` as text: forecasts/<asof>.parquet's table."""
    from roicast.config import validate_params
    from roicast.forecasting import forecast

    with tempfile.TemporaryDirectory() as scratch:
        csv = Path(scratch) / "prices.csv"
        dated(prices).to_csv(csv, index=False)
        recorded = forecast.run_params(run_id).model_dump()
        params = validate_params({
            **recorded, "forecast_source": "csv", "forecast_csv_path": str(csv), "asof": asof,
            "forecast_days": forecast_days or recorded["forecast_days"],
            # how the CSV written above reads, whatever the run's own CSV looked like
            "csv_date_column": "date", "csv_date_format": "%Y-%m-%d", "csv_decimal": ".", "csv_ticker": None})
        try:
            frame = forecast.make_forecast(run_id, params).frame
        except RoicastError as exc:  # the CLI's message, naming what the client sent, not a temporary file
            raise type(exc)(str(exc).replace(str(csv), "the posted prices")) from None
    return frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d"))


class RunForecaster(PythonModel):
    """The pyfunc model of one finished run; `predict(prices, params={"asof", "forecast_days"})`.
    Its run id comes from the model's config, so nothing of it is pickled (MLflow's models from
    code: served_model.py)."""

    def load_context(self, context) -> None:
        self.run_id = context.model_config["run_id"]
        self.workdir = Path(context.artifacts["workdir"])
        params = read_json(self.workdir / "data" / "runs" / self.run_id / store.PARAMS)
        os.environ.setdefault("KERAS_BACKEND", params.get("backend", "tensorflow"))  # before Keras loads

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        options = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            with _workdir(self.workdir):
                return forecast_prices(self.run_id, model_input, **options)
        except RoicastError as exc:  # the CLI's one line, as a 400 of the scoring server
            raise MlflowException.invalid_parameter_value(str(exc)) from None


def requirements() -> list[str]:
    """roicast's own dependencies and this MLflow: given, so that MLflow does not load the model
    in a subprocess to infer them."""
    needed = [req for req in importlib.metadata.requires("roicast") or [] if "extra ==" not in req]
    return [*needed, f"mlflow=={mlflow.__version__}"]


def stage(run_id: str, folder: Path) -> Path:
    """A work folder holding only this run's folder (less LEFT_OUT): the model's artefact."""
    shutil.copytree(paths.run_dir(run_id), folder / "data" / "runs" / run_id,
                    ignore=shutil.ignore_patterns(*LEFT_OUT))
    return folder


def log_model(run_id: str, mlflow_run_id: str, tracking_uri: str) -> str:
    """Log run `run_id` as the pyfunc model `forecaster` of MLflow run `mlflow_run_id`; its URI."""
    mlflow.set_tracking_uri(tracking_uri)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # no bar for copying the run's files
    with (tempfile.TemporaryDirectory() as scratch, mlflow.start_run(run_id=mlflow_run_id),
          warnings.catch_warnings()):
        warnings.filterwarnings("ignore", ".*An input example was not provided")  # one would be run here
        info = mlflow.pyfunc.log_model(name=MODEL_NAME, python_model=str(MODEL_CODE),
                                       model_config={"run_id": run_id},
                                       artifacts={"workdir": str(stage(run_id, Path(scratch)))},
                                       signature=SIGNATURE, pip_requirements=requirements())
    return info.model_uri
