"""Command line: `roicast run` executes the notebook chain, `roicast forecast` the days after the
data from a finished run, `roicast sweep` a parameter grid."""

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from roicast import __version__, paths
from roicast.errors import NotebookError, ParameterError, RoicastError, RunInterrupted, storage_error

if TYPE_CHECKING:
    from roicast.config import RunParams

FORECAST_ALIASES = {"source": "forecast_source", "csv_path": "forecast_csv_path"}  # the new prices'


def _run_parser(sub) -> None:
    run = sub.add_parser("run", help="run the notebook chain with papermill",
                         description="Run 01_collect … 06_forecast with validated parameters.")
    run.add_argument("--params", metavar="FILE.yaml", help="YAML mapping of parameter names to values")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="set one parameter (repeatable)")
    run.add_argument("--run-id", help="name of the run folder (default: time and source)")
    run.add_argument("--only", help="comma-separated notebooks to run against an existing run, "
                                    "e.g. 04_evaluate,05_ensemble or 04,05")
    run.add_argument("--resume", action="store_true",
                     help="run the notebooks after the last one that finished in --run-id")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing run of the same id (it is removed first)")
    run.add_argument("--scheduler", help="address of an existing dask scheduler that trains 05_ensemble's "
                     "members, e.g. tcp://127.0.0.1:8786 (default: a LocalCluster on this machine; it "
                     "runs any code sent to it: keep it on localhost or use tls://); fails after 5 s if "
                     "unreachable")
    run.add_argument("--with-code", action="store_true", help="show code cells in the HTML reports")
    run.add_argument("--quiet", action="store_true",
                     help="one line per notebook, without what the notebooks print while they run")
    _mlflow_argument(run, "log the run to MLflow")


def _mlflow_argument(parser, what: str) -> None:
    parser.add_argument("--mlflow", nargs="?", const="", default=None, metavar="TRACKING_URI",
                        help=f"{what} (default: sqlite:///<work folder>/mlflow.db; or a tracking server, "
                        "e.g. http://127.0.0.1:5000); needs the extra: pip install -e \".[mlflow]\"")


def _track(uri: str | None, run_id: str) -> None:
    """Log a run to MLflow when --mlflow asked for it, and say where."""
    if uri is None:
        return
    from mlflow.exceptions import MlflowException

    from roicast.runs import tracking

    try:
        mlflow_id = tracking.log_run(run_id, uri or None)
    except (MlflowException, OSError) as exc:
        raise RoicastError(f"run {run_id} is kept, but logging it to MLflow failed: {exc}. Log it again "
                           f"in Python: roicast.runs.tracking.log_run({run_id!r}, {uri or None!r})") from None
    print(f"\nMLflow: run {mlflow_id} in {uri or tracking.default_uri()} (model: runs:/{mlflow_id}/"
          f"{tracking.MODEL_NAME})")


def _print_headline(run_id: str) -> None:
    """The run's headline table, with the columns of its task (R² and MAE, or accuracy and AUC)."""
    from roicast.runs.reports import headline_columns, headline_rows
    from roicast.runs.store import METRICS

    metrics_path = paths.run_dir(run_id) / METRICS
    if not metrics_path.exists():
        return
    metrics = json.loads(metrics_path.read_text())
    rows, columns = headline_rows(metrics), headline_columns(metrics)
    if not rows:
        return
    first = max(len(row["predictor"]) for row in rows) + 2
    print(f"\n{'predictor':<{first}}" + "".join(f"{label:>{len(label) + 2}}" for _, label, _ in columns))
    for row in rows:
        cells = [f"{fmt % row[key] if row.get(key) is not None else '':>{len(label) + 2}}"
                 for key, label, fmt in columns]
        print(f"{row['predictor']:<{first}}" + "".join(cells))


def cmd_run(args: argparse.Namespace) -> int:
    from roicast.config import read_values
    from roicast.runs.runner import resolve_params, run_chain, select_notebooks

    if args.mlflow is not None:
        from roicast.runs.tracking import check_uri, require_mlflow

        require_mlflow()  # before hours of training, not after
        check_uri(args.mlflow)
    only = [part.strip() for part in args.only.split(",")] if args.only else None
    if only and args.resume:
        raise ParameterError("--only and --resume exclude each other: --resume picks the notebooks itself.")
    values = read_values(args.params, args.parameter)
    if only and select_notebooks(only) == ["06_forecast"]:
        params = forecast_params(values, args.run_id)
    else:
        params = resolve_params(values, args.run_id, only, args.resume)
    try:
        result = run_chain(params, only=only, with_code=args.with_code, overwrite=args.overwrite,
                           resume=args.resume, quiet=args.quiet, scheduler=args.scheduler)
    except NotebookError:
        _track(args.mlflow, params.run_id)  # a failed run is logged too, as FAILED
        raise
    print(f"\nReport: {result.report_index}")
    _print_headline(result.run_id)
    _print_forecast(result.run_id)
    _track(args.mlflow, result.run_id)
    return 0


def forecast_params(values: dict, run_id: str | None) -> "RunParams":
    """The parameters of one forecast: the run's record, and the forecast's own (06_forecast's;
    `source` and `csv_path` name the new prices) from `values` or their defaults, never an earlier
    forecast's. A parameter of the run's training may only repeat its recorded value."""
    from roicast.config import RunParams
    from roicast.runs import store
    from roicast.runs.runner import resolve_params

    values = dict(values)
    for name, target in FORECAST_ALIASES.items():
        if name in values:
            if target in values and values[target] != values[name]:
                raise ParameterError(f"{name} and {target} disagree; in a forecast both name the new "
                                     f"prices' {name}: give one of them.")
            values[target] = values.pop(name)
    own = store.own_parameters("06_forecast")
    params = resolve_params({**{name: RunParams.model_fields[name].default for name in own}, **values},
                            run_id, ["06_forecast"])
    recorded = resolve_params({}, params.run_id, ["06_forecast"])
    changed = sorted(name for name in values
                     if name not in own and getattr(params, name) != getattr(recorded, name))
    if changed:
        raise ParameterError(
            f"{', '.join(changed)} belong{'s' if len(changed) == 1 else ''} to the training of run "
            f"'{params.run_id}', which a forecast never changes; a forecast takes only "
            f"{', '.join(own)} (with source and csv_path for forecast_source and forecast_csv_path). "
            "Train a new run with `roicast run` for other settings.")
    return params


def cmd_forecast(args: argparse.Namespace) -> int:
    from roicast.config import read_values
    from roicast.runs.runner import run_chain

    values = read_values(args.params, args.parameter)
    if args.asof:
        values["asof"] = args.asof
    params = forecast_params(values, args.run_id)
    run_chain(params, only=["06_forecast"], quiet=args.quiet)
    _print_forecast(params.run_id)
    return 0


def _print_forecast(run_id: str) -> None:
    """The latest forecast of a run: tomorrow per asset, highest expected return first."""
    import pandas as pd

    from roicast.forecasting.forecast_table import expected_returns
    from roicast.runs.store import FORECAST_INFO, FORECASTS

    section = paths.run_dir(run_id) / FORECAST_INFO
    if not section.exists():
        return
    info = json.loads(section.read_text())["forecast"]
    folder = paths.run_dir(run_id) / FORECASTS
    table = pd.read_parquet(folder / f"{info['asof']}.parquet")
    print(f"\nForecast of run {run_id} as of {info['asof']} for the next trading day "
          f"({info['interval']:.0%} intervals; files in {folder}):")
    print(expected_returns(table).round(3).to_string())
    for note in info["notes"]:
        print(f"note: {note}")


def cmd_sweep(args: argparse.Namespace) -> int:
    from roicast.runs.sweep import run_sweep

    if args.mlflow is not None:
        from roicast.runs.tracking import check_uri, require_mlflow

        require_mlflow()
        check_uri(args.mlflow)
    index = run_sweep(args.grid, scheduler=args.scheduler, workers=args.workers)
    print(f"\nSweep report: {index}")
    if args.mlflow is not None:
        from roicast.runs import tracking

        parent = tracking.log_sweep(index.parent / "sweep.json", args.mlflow or None)
        print(f"MLflow: sweep run {parent} in {args.mlflow or tracking.default_uri()}, one child per run")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roicast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"roicast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    ahead = sub.add_parser("forecast", help="forecast the days after the data from a finished run",
                           description="Run 06_forecast alone against a finished run, with fresh prices "
                           "from the run's source (or -p forecast_source / forecast_csv_path).")
    ahead.add_argument("--run-id", required=True, help="the finished run whose network forecasts")
    ahead.add_argument("--asof", metavar="YYYY-MM-DD",
                       help="forecast as of this day (default: the newest price)")
    ahead.add_argument("--params", metavar="FILE.yaml", help="YAML mapping of parameter names to values")
    ahead.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="set one parameter, e.g. -p forecast_days 10 (repeatable)")
    ahead.add_argument("--quiet", action="store_true", help="only the forecast table")
    sweep = sub.add_parser("sweep", help="one full run per combination of a parameter grid")
    sweep.add_argument("--grid", required=True, metavar="GRID.yaml",
                       help="YAML mapping of parameter names to lists of values")
    sweep.add_argument("--scheduler", help="address of an existing dask scheduler, e.g. "
                       "tcp://127.0.0.1:8786 (it runs any code sent to it: keep it on localhost "
                       "or use tls://); fails after 5 s if unreachable")
    sweep.add_argument("--workers", type=int, default=None,
                       help="local workers (default: cores // 2; never more than the runs to do)")
    _mlflow_argument(sweep, "log the sweep to MLflow: a parent run, one child per run, the chosen one tagged")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"run": cmd_run, "forecast": cmd_forecast, "sweep": cmd_sweep}[args.command]
    try:
        return command(args)
    except RunInterrupted as exc:
        print(f"roicast: {exc}", file=sys.stderr)
        return 130
    except RoicastError as exc:
        print(f"roicast: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk or a folder it may not write, outside a run's notebooks
        error = storage_error(exc)
        if error is None:
            raise
        print(f"roicast: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("roicast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
