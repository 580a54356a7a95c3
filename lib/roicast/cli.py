"""Command line: `roicast run` executes the notebook chain, `roicast sweep` a parameter grid."""

import argparse
import json
import sys
from collections.abc import Sequence

from roicast import paths
from roicast.errors import RoicastError


def _run_parser(sub) -> None:
    run = sub.add_parser("run", help="run the notebook chain with papermill",
                         description="Run 01_collect … 05_ensemble with validated parameters.")
    run.add_argument("--params", metavar="FILE.yaml", help="YAML mapping of parameter names to values")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="set one parameter (repeatable)")
    run.add_argument("--run-id", help="name of the run folder (default: time and source)")
    run.add_argument("--only", help="comma-separated notebooks to run against an existing run, "
                                    "e.g. 04_evaluate,05_ensemble or 04,05")
    run.add_argument("--with-code", action="store_true", help="show code cells in the HTML reports")


def _print_headline(run_id: str) -> None:
    from roicast.reports import headline_rows

    metrics_path = paths.run_dir(run_id) / "metrics.json"
    if not metrics_path.exists():
        return
    rows = headline_rows(json.loads(metrics_path.read_text()))
    if not rows:
        return
    print(f"\n{'predictor':<12} {'R² scaled':>10} {'MAE ROI %':>10} {'R² ROI %':>9} {'dir. acc':>9}")
    for row in rows:
        cells = [row["r2_scaled"], row["mae_roi_pct"], row["r2_roi_pct"], row["direction_acc"]]
        text = [f"{v:>10.3f}" if v is not None else f"{'':>10}" for v in cells]
        print(f"{row['predictor']:<12} {' '.join(text)}")


def cmd_run(args: argparse.Namespace) -> int:
    from roicast.config import read_values
    from roicast.runner import resolve_params, run_chain

    only = [part.strip() for part in args.only.split(",")] if args.only else None
    params = resolve_params(read_values(args.params, args.parameter), args.run_id, only)
    result = run_chain(params, only=only, with_code=args.with_code)
    print(f"\nReport: {result.report_index}")
    _print_headline(result.run_id)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from roicast.sweep import run_sweep

    index = run_sweep(args.grid, scheduler=args.scheduler, workers=args.workers)
    print(f"\nSweep report: {index}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roicast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    sweep = sub.add_parser("sweep", help="one full run per combination of a parameter grid")
    sweep.add_argument("--grid", required=True, metavar="GRID.yaml",
                       help="YAML mapping of parameter names to lists of values")
    sweep.add_argument("--scheduler", help="address of an existing dask scheduler")
    sweep.add_argument("--workers", type=int, default=None, help="local workers (default: cores // 2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"run": cmd_run, "sweep": cmd_sweep}[args.command]
    try:
        return command(args)
    except RoicastError as exc:
        print(f"roicast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("roicast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
