"""M6 on the bundled data: the distributional baselines month by month, 1995 to 2022.

Every non-overlapping period of H trading days (default 20, M6's four weeks) from 1995 to 2022
is forecast for the bundled 20 stocks from the returns before it (the file starts in 1990) by
each baseline of roicast.models.distribution: uniform ranks; a zero-mean Gaussian with the trailing
covariance of daily log returns (250 days); GARCH(1,1) variances per asset (fitted on 1000
days) with the 250-day correlation. Scored by roicast.evaluation.m6: mean RPS of the quintile
probabilities (Monte Carlo, 10,000 draws, the same random numbers for every forecaster), mean
CRPS of the H-day log return, the central intervals' coverage overall and by tercile of the
forecast scale, paired t-tests of per-period RPS and CRPS against the covariance baseline, and
the decision's information ratio and drawdown (inverse volatility, Σ|w| = 1; the uniform
forecaster, having no scale, decides equal weights).

With --network, the distribution network (`output: distribution` on the H-day 'sum' target) too:
retrained each calendar year on the five years before it (`network_distribution.YearlyNetwork`:
each month calibrated, anchored by the trailing 250-day scale, on the network's own earlier
months once 24 have ended, before that on the year's held-out windows),
`--members` networks per year (seeds 42, 43, ...), scored as its first member alone ('network') and
as the members' mixture ('ensemble'), each also with its mean set to zero (only the scale and the
residual correlation: the location's noise cannot cost rank probabilities). `--network small`
is a smaller network than the default (LSTM 16/8 units, 2 attention heads of 8, dense 32), so
that the 28 years train on two cores in 20–25 minutes with two members (2026-12-04; up to twice that
on slower days of the same machine); `default` is RunParams' network.

Usage: python benchmarks/m6.py [--horizon-days 20] [--window 250] [--garch-window 1000]
                               [--draws 10000] [--seed 0] [--network small|default] [--members 3]
                               [--years 1995 2022]
       python benchmarks/m6.py --render reports/benchmarks/m6_network.json   (the table again, from
                               the recorded scores: no forecast is made)
Writes reports/benchmarks/m6.json and m6.md, with --network m6_network.json and m6_network.md, and
the networks' outputs before calibration in m6_network_outputs.npz (benchmarks/m6_variants.py
calibrates them again without training).
"""

import argparse
import json
import shlex
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from results import RESULTS, save_results

from roicast import paths
from roicast.config import RunParams
from roicast.evaluation import m6
from roicast.models import distribution
from roicast.models.network_distribution import YearlyNetwork

FIRST_YEAR, LAST_YEAR = 1995, 2022
REFERENCE = "covariance"
LEVEL_90 = 0.9
TRAIN_YEARS = 5
OUTPUTS = RESULTS / "m6_network_outputs.npz"  # the networks' raw outputs, for m6_variants.py
NETWORKS = {"small": {"lstm_units": [16, 8], "attention_heads": 2, "attention_key_dim": 8, "dense_units": 32},
            "default": {}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon-days", type=int, default=20)
    parser.add_argument("--window", type=int, default=250, help="days behind the covariance and correlation")
    parser.add_argument("--garch-window", type=int, default=1000, help="days each GARCH(1,1) is fitted on")
    parser.add_argument("--draws", type=int, default=10_000, help="Monte Carlo draws per period")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--network", choices=sorted(NETWORKS),
                        help="also the distribution network, this size")
    parser.add_argument("--members", type=int, default=3, help="networks per year for the ensemble")
    parser.add_argument("--render", metavar="JSON",
                        help="write the table of an earlier run again from its JSON, forecasting nothing")
    parser.add_argument("--years", type=int, nargs=2, default=[FIRST_YEAR, LAST_YEAR],
                        metavar=("FIRST", "LAST"),
                        help=f"first and last year of the periods (default {FIRST_YEAR} {LAST_YEAR})")
    args = parser.parse_args()
    args.start, args.end = f"{args.years[0]}-01-01", f"{args.years[1]}-12-31"
    return args


def network_params(size: str, horizon_days: int) -> RunParams:
    """The network's run parameters: the default chain with the H-day sum target and a
    distribution output, at `size`."""
    return RunParams(run_id="m6", target="sum", horizon_days=horizon_days, output="distribution",
                     **NETWORKS[size])


def zero_mean(forecasts: list[distribution.Forecast]) -> list[distribution.Forecast]:
    """The same forecasts with their means set to zero."""
    return [distribution.Forecast(f.assets, np.zeros(len(f.assets)), f.covariance) for f in forecasts]


def with_progress(network: YearlyNetwork, began: float):
    """The network as a forecaster that says on stderr when it starts a year's training."""

    def forecast(history: pd.DataFrame, horizon_days: int) -> distribution.Forecast:
        if history.index[-1].year != network.year:
            print(f"network: training for {history.index[-1].year} "
                  f"({time.perf_counter() - began:.0f} s so far)", file=sys.stderr, flush=True)
        return network(history, horizon_days)

    return forecast


def network_evaluations(prices: pd.DataFrame, args) -> tuple[dict, dict, dict]:
    """The network rows' evaluations, their seconds, and how the networks trained."""
    network = YearlyNetwork(network_params(args.network, args.horizon_days), TRAIN_YEARS, args.members)
    began = time.perf_counter()
    mixture = m6.evaluate(prices, with_progress(network, began), args.horizon_days, args.start, args.end,
                          args.draws, args.seed)
    seconds = time.perf_counter() - began
    returns = distribution.log_returns(prices)
    first = [network.forecasts["first member"][asof] for asof in mixture.periods["asof"]]
    mixed = [network.forecasts["mixture"][asof] for asof in mixture.periods["asof"]]

    def score(forecasts: list[distribution.Forecast]) -> m6.Evaluation:
        return m6.score_forecasts(returns, mixture.periods, forecasts, args.horizon_days, args.draws,
                                  args.seed)

    evaluations = {"network": score(first), "network, zero mean": score(zero_mean(first))}
    if args.members > 1:
        evaluations.update({f"ensemble of {args.members}": mixture,
                            f"ensemble of {args.members}, zero mean": score(zero_mean(mixed))})
    fits = pd.DataFrame(network.fits)
    training = {"size": args.network, "members": args.members, "train_years": TRAIN_YEARS,
                "anchor_days": network.anchor_days, "track_record": network.track_record,
                "params": network.params.model_dump(), "folds": int(fits["year"].nunique()),
                "fits": network.fits, "median_epochs": float(fits["epochs_run"].median()),
                "median_fit_seconds": float(fits["fit_seconds"].median())}
    network.save_outputs(OUTPUTS)
    shared = seconds / len(evaluations)  # one training serves every network row
    return evaluations, dict.fromkeys(evaluations, shared), training


def _t(test: dict) -> str:
    return "—" if pd.isna(test["t"]) else f"{test['t']:+.2f}"


def _number(value: float, digits: int) -> str:
    return "—" if pd.isna(value) else f"{value:.{digits}f}"


def t_against_uniform(per_period: dict) -> dict[str, float]:
    """Each forecaster's paired t of per-period RPS against uniform ranks (negative: better than
    no view; the issue's bar is RPS below 0.16 with |t| ≥ 3)."""
    uniform = per_period["uniform"]["rps"]
    return {name: m6.paired_t(scores["rps"], uniform)["t"]
            for name, scores in per_period.items() if name not in ("asof", "uniform")}


def _calibration(training: dict) -> str:
    """How the network rows were calibrated, in words (runs before the anchor and the track
    record recorded neither)."""
    anchor, record = training.get("anchor_days"), training.get("track_record")
    anchored = f", anchored by the trailing {anchor}-day scale" if anchor else ""
    if record:
        return (f"on the year's held-out windows until {record} periods had ended, then on the "
                f"network's own track record (every earlier period){anchored}")
    return f"on the year's held-out windows{anchored}"


def markdown(summaries: dict[str, dict], seconds: dict[str, float], args, command: str,
             training: dict | None = None, vs_uniform: dict[str, float] | None = None) -> str:
    vs_uniform = vs_uniform or {}
    first = next(iter(summaries.values()))
    net = training["params"] if training else {}
    lines = [
        f"{first['periods']} non-overlapping periods of {args.horizon_days} trading days, {args.years[0]} "
        f"to {args.years[1]}, the bundled 20 stocks; quintile probabilities from {args.draws:,} Monte Carlo "
        "draws "
        f"(seed {args.seed}). t: paired t-test of per-period scores against the {args.window}-day "
        "covariance baseline (positive: worse than it); t vs uniform: the same against uniform ranks. "
        "Decision: long-only, Σ|w| = 1; IR = mean / std "
        "of the portfolio's period log returns (not annualised).",
        "",
        f"Command: `{command}`",
        "",
        *([] if training is None else [
            f"Network rows: the {training['size']} network (LSTM {net['lstm_units']}, "
            f"{net['attention_heads']} attention heads of {net['attention_key_dim']}, "
            f"dense {net['dense_units']}, at most {net['epochs']} epochs), "
            f"{training['folds']} yearly trainings of {training['members']} member(s) on the "
            f"{training['train_years']} years before; median {training['median_epochs']:.0f} epochs and "
            f"{training['median_fit_seconds']:.0f} s per network; the seconds column splits one run's "
            "time over its rows. Calibrated "
            f"{_calibration(training)}.", ""]),
        "| forecaster | mean RPS | t RPS | t RPS vs uniform | mean CRPS | t CRPS "
        "| 90 % coverage, low / mid / high scale | decision | IR | max drawdown | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in summaries.items():
        cover = result["coverage"][LEVEL_90]
        lines.append(
            f"| {name} | {result['rps']:.4f} | {_t(result['rps_vs_reference'])} | "
            f"{_t({'t': vs_uniform.get(name, np.nan)})} | "
            f"{_number(result['crps'], 4)} | {_t(result['crps_vs_reference'])} | "
            f"{_number(cover['low'], 3)} / {_number(cover['mid'], 3)} / {_number(cover['high'], 3)} | "
            f"{'equal weight' if name == 'uniform' else 'inverse volatility'} | {result['ir']:.3f} | "
            f"{result['max_drawdown']:.1%} | {seconds[name]:.0f} |")
    lines += ["", "Central interval coverage over all forecasts:", "",
              "| forecaster | " + " | ".join(f"{level:.0%}" for level in m6.LEVELS) + " |",
              "|---|" + "---|" * len(m6.LEVELS)]
    for name, result in summaries.items():
        coverage = {float(level): value for level, value in result["coverage"].items()}
        if not pd.isna(coverage[LEVEL_90]["all"]):
            lines.append(f"| {name} | " + " | ".join(f"{coverage[level]['all']:.3f}"
                                                     for level in m6.LEVELS) + " |")
    return "\n".join(lines)


def render(path: str) -> None:
    """The table of an earlier run, written again from its JSON (a new column, a fixed typo)."""
    try:
        data = json.loads(Path(path).read_text())
        args = argparse.Namespace(**data["parameters"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"m6.py: cannot render {path}: {type(exc).__name__}: {exc}; pass the JSON an "
                         "earlier run wrote (reports/benchmarks/m6.json or m6_network.json)") from None
    summaries = {name: {**summary, "coverage": {float(level): value
                                                for level, value in summary["coverage"].items()}}
                 for name, summary in data["summaries"].items()}
    name = Path(path).stem
    save_results(name, data, markdown(summaries, data["seconds"], args, data["command"],
                                      data["network_training"], t_against_uniform(data["per_period"])))


def main() -> None:
    args = parse_args()
    if args.render:
        render(args.render)
        return
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
        evaluations[name] = m6.evaluate(prices, forecaster, args.horizon_days, args.start, args.end,
                                        args.draws, args.seed)
        seconds[name] = time.perf_counter() - began
        print(f"{name}: {seconds[name]:.0f} s", file=sys.stderr)
    training = None
    if args.network:
        networks, network_seconds, training = network_evaluations(prices, args)
        evaluations.update(networks)
        seconds.update(network_seconds)
    summaries = {name: m6.summary(evaluation, evaluations[REFERENCE])
                 for name, evaluation in evaluations.items()}
    periods = evaluations[REFERENCE].periods
    data = {
        "command": command, "parameters": vars(args), "start": args.start, "end": args.end,
        "assets": evaluations[REFERENCE].assets, "summaries": summaries, "seconds": seconds,
        "network_training": training,
        "per_period": {"asof": [str(d.date()) for d in periods["asof"]],
                       **{name: {"rps": e.rps.tolist(), "crps": e.crps.tolist(),
                                 "portfolio": e.portfolio.tolist()} for name, e in evaluations.items()}},
    }
    table = markdown(summaries, seconds, args, command, training, t_against_uniform(data["per_period"]))
    save_results("m6_network" if args.network else "m6", data, table)


if __name__ == "__main__":
    main()
