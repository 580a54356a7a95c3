"""M6 on the bundled data: the distributional baselines month by month, 1995 to 2022.

Every non-overlapping period of H trading days (default 20, M6's four weeks) from 1995 to 2022
is forecast for the bundled 20 stocks from the returns before it (the file starts in 1990) by
each baseline of roicast.distribution: uniform ranks; a zero-mean Gaussian with the trailing
covariance of daily log returns (250 days); GARCH(1,1) variances per asset (fitted on 1000
days) with the 250-day correlation. Scored by roicast.m6: mean RPS of the quintile
probabilities (Monte Carlo, 10,000 draws, the same random numbers for every forecaster), mean
CRPS of the H-day log return, the central intervals' coverage overall and by tercile of the
forecast scale, paired t-tests of per-period RPS and CRPS against the covariance baseline, and
the decision's information ratio and drawdown (inverse volatility, Σ|w| = 1; the uniform
forecaster, having no scale, decides equal weights).

Usage: python benchmarks/m6.py [--horizon-days 20] [--window 250] [--garch-window 1000]
                               [--draws 10000] [--seed 0]
Writes reports/benchmarks/m6.json and m6.md.
"""

import argparse
import shlex
import sys
import time
from functools import partial

import pandas as pd
from results import save_results

from roicast import distribution, m6, paths

START, END = "1995-01-01", "2022-12-31"
REFERENCE = "covariance"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon-days", type=int, default=20)
    parser.add_argument("--window", type=int, default=250, help="days behind the covariance and correlation")
    parser.add_argument("--garch-window", type=int, default=1000, help="days each GARCH(1,1) is fitted on")
    parser.add_argument("--draws", type=int, default=10_000, help="Monte Carlo draws per period")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _t(test: dict) -> str:
    return "—" if pd.isna(test["t"]) else f"{test['t']:+.2f}"


def _number(value: float, digits: int) -> str:
    return "—" if pd.isna(value) else f"{value:.{digits}f}"


def markdown(summaries: dict[str, dict], seconds: dict[str, float], args, command: str) -> str:
    first = next(iter(summaries.values()))
    lines = [
        f"{first['periods']} non-overlapping periods of {args.horizon_days} trading days, {START[:4]} to "
        f"{END[:4]}, the bundled 20 stocks; quintile probabilities from {args.draws:,} Monte Carlo draws "
        f"(seed {args.seed}). t: paired t-test of per-period scores against the {args.window}-day "
        "covariance baseline (positive: worse than it). Decision: long-only, Σ|w| = 1; IR = mean / std "
        "of the portfolio's period log returns (not annualised).",
        "",
        f"Command: `{command}`",
        "",
        "| forecaster | mean RPS | t RPS | mean CRPS | t CRPS | 90 % coverage, low / mid / high scale "
        "| decision | IR | max drawdown | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in summaries.items():
        cover = result["coverage"][0.9]
        lines.append(
            f"| {name} | {result['rps']:.4f} | {_t(result['rps_vs_reference'])} | "
            f"{_number(result['crps'], 4)} | {_t(result['crps_vs_reference'])} | "
            f"{_number(cover['low'], 3)} / {_number(cover['mid'], 3)} / {_number(cover['high'], 3)} | "
            f"{'equal weight' if name == 'uniform' else 'inverse volatility'} | {result['ir']:.3f} | "
            f"{result['max_drawdown']:.1%} | {seconds[name]:.0f} |")
    lines += ["", "Central interval coverage over all forecasts:", "",
              "| forecaster | " + " | ".join(f"{level:.0%}" for level in m6.LEVELS) + " |",
              "|---|" + "---|" * len(m6.LEVELS)]
    for name, result in summaries.items():
        if not pd.isna(result["coverage"][0.9]["all"]):
            lines.append(f"| {name} | " + " | ".join(f"{result['coverage'][level]['all']:.3f}"
                                                     for level in m6.LEVELS) + " |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    command = shlex.join([".venv/bin/python", "benchmarks/m6.py", *sys.argv[1:]])
    prices = pd.read_csv(paths.SAMPLE_PRICES, index_col=0, parse_dates=True)
    forecasters = {
        "uniform": distribution.uniform,
        REFERENCE: partial(distribution.trailing_covariance, window=args.window),
        "garch": partial(distribution.garch, window=args.garch_window, correlation_window=args.window),
    }
    evaluations, seconds = {}, {}
    for name, forecaster in forecasters.items():
        began = time.perf_counter()
        evaluations[name] = m6.evaluate(prices, forecaster, args.horizon_days, START, END,
                                        args.draws, args.seed)
        seconds[name] = time.perf_counter() - began
        print(f"{name}: {seconds[name]:.0f} s", file=sys.stderr)
    summaries = {name: m6.summary(evaluation, evaluations[REFERENCE])
                 for name, evaluation in evaluations.items()}
    periods = evaluations[REFERENCE].periods
    data = {
        "command": command, "parameters": vars(args), "start": START, "end": END,
        "assets": evaluations[REFERENCE].assets, "summaries": summaries, "seconds": seconds,
        "per_period": {"asof": [str(d.date()) for d in periods["asof"]],
                       **{name: {"rps": e.rps.tolist(), "crps": e.crps.tolist(),
                                 "portfolio": e.portfolio.tolist()} for name, e in evaluations.items()}},
    }
    save_results("m6", data, markdown(summaries, seconds, args, command))


if __name__ == "__main__":
    main()
