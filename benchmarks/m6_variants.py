"""The M6 network's recorded outputs calibrated six ways, chosen on 1995–2008, confirmed on 2009–2022.

`benchmarks/m6.py --network` keeps every yearly training's raw outputs (before calibration) in
reports/benchmarks/m6_network_outputs.npz. This script builds the network's monthly forecasts
from them again, without training, in variants fixed before any was scored, in two rounds.

First round (four variants):
- 'held-out windows': the calibration of the year's held-out windows by factor and power
  (`network_distribution.Calibration`), with the training residuals' correlation;
- 'anchored': the scale calibrated with the trailing 250-day scale as a second covariate
  (`factor · reference · (scale/reference)^power · (σ250/reference250)^anchor_power`, all by the
  held-out likelihood): the covariance baseline's edge is its 250 days of history, which the
  network's 60-day window lacks;
- 'trailing correlation': the assets' correlation of the last 250 daily returns (the
  covariance baseline's) instead of the training residuals';
- 'anchored, trailing correlation': both.

Second round (two variants, after the first round's intervals covered too little in calm
months): 'track record' and 'track record, anchored' calibrate each month on all earlier months'
raw forecasts and realised returns once there are 24 of them (the held-out windows chose the
network's weights by early stopping, so they flatter it). The chosen one, 'track record,
anchored', is what `YearlyNetwork` (so m6.py) does since.

Each variant is scored as the first member ('network') and the members' mixture ('ensemble'),
with and without the mean, on three spans: 1995–2008 (where a variant is chosen: lowest mean
RPS of the ensemble without its mean), 2009–2022 (the confirmation, not used for the choice; the
second round was designed after the first round's 28-year rows had been seen) and all 28 years,
each against the covariance baseline on the same months.

Usage: python benchmarks/m6_variants.py [--outputs reports/benchmarks/m6_network_outputs.npz]
Writes reports/benchmarks/m6_variants.json and m6_variants.md.
"""

import argparse
import shlex
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
from m6 import LEVEL_90, OUTPUTS, REFERENCE, zero_mean
from results import save_results

from roicast import paths
from roicast.evaluation import m6
from roicast.models import distribution
from roicast.models.network_distribution import (
    ANCHOR_DAYS,
    Calibration,
    YearlyNetwork,
    load_outputs,
    mixture,
    trailing_scale,
)

SPANS = {
    "1995–2008 (choice)": ("1995-01-01", "2008-12-31"),
    "2009–2022 (confirmation)": ("2009-01-01", "2022-12-31"),
    "1995–2022": ("1995-01-01", "2022-12-31"),
}
CHOICE = next(iter(SPANS))


class Trailing:
    """The trailing 250-day scale (H days) and correlation of the daily log returns up to a day."""

    def __init__(self, returns: pd.DataFrame, horizon_days: int):
        self.returns, self.horizon_days = returns, horizon_days
        self.sd = trailing_scale(returns, horizon_days, ANCHOR_DAYS)

    def scale(self, days: np.ndarray) -> np.ndarray:
        return self.sd.loc[pd.DatetimeIndex(days)].to_numpy()

    def correlation(self, day: pd.Timestamp) -> np.ndarray:
        return np.corrcoef(self.returns.loc[:day].to_numpy()[-ANCHOR_DAYS:], rowvar=False)


@dataclass(frozen=True)
class Variant:
    """How a variant builds its forecasts from the recorded outputs."""

    anchored: bool = False  # the trailing 250-day scale as a second scale covariate
    trailing_correlation: bool = False  # the last 250 days' correlation, not the training residuals'
    track_record: bool = False  # calibrated on the earlier periods' forecasts and outcomes


VARIANTS = {"held-out windows": Variant(), "anchored": Variant(anchored=True),
            "trailing correlation": Variant(trailing_correlation=True),
            "anchored, trailing correlation": Variant(anchored=True, trailing_correlation=True),
            "track record": Variant(track_record=True),
            "track record, anchored": Variant(anchored=True, track_record=True)}


def fit_calibration(variant: Variant, actual: np.ndarray, mean: np.ndarray, sd: np.ndarray,
                    days: np.ndarray, trailing: Trailing) -> Calibration:
    return Calibration.fit(actual, mean, sd, trailing.scale(days) if variant.anchored else None)


def variant_forecasts(outputs, table: pd.DataFrame, realised: np.ndarray, trailing: Trailing,
                      variant: Variant, chosen: slice) -> list[distribution.Forecast]:
    """One view's forecast for every recorded period under a variant. A track-record variant
    calibrates period k on the raw forecasts and realised returns of periods 0 … k − 1 (periods
    are consecutive, so each has ended by period k's eve), once there are `YearlyNetwork.TRACK_RECORD`."""
    assets, years, periods = outputs
    fitted = {}
    for year, seen in years.items():
        mean, sd = mixture(seen.val_location[chosen], seen.val_scale[chosen])
        fitted[year] = (fit_calibration(variant, seen.val_actual, mean, sd, seen.val_asof, trailing),
                        seen.correlation(chosen))
    if list(periods) != list(table["asof"]):
        raise ValueError("the recorded periods are not the table's")
    mixed = [mixture(location[chosen], scale[chosen]) for location, scale in periods.values()]
    forecasts = []
    for k, asof in enumerate(table["asof"]):
        calibration, correlation = fitted[asof.year]
        if variant.track_record and k >= YearlyNetwork.TRACK_RECORD:
            calibration = fit_calibration(variant, realised[:k], np.array([m for m, _ in mixed[:k]]),
                                          np.array([s for _, s in mixed[:k]]),
                                          table["asof"].to_numpy()[:k], trailing)
        if variant.trailing_correlation:
            correlation = trailing.correlation(asof)
        mean, sd = mixed[k]
        sd = calibration.scale(sd, trailing.scale(np.array([asof]))[0] if variant.anchored else None)
        forecasts.append(distribution.Forecast(assets, calibration.location(mean),
                                               correlation * np.outer(sd, sd)))
    return forecasts


def within(evaluation: m6.Evaluation, start: str, end: str) -> m6.Evaluation:
    """The evaluation's periods whose first day lies in [start, end] (the first period's eve is in 1994)."""
    keep = ((evaluation.periods["first"] >= start) & (evaluation.periods["first"] <= end)).to_numpy()
    return m6.Evaluation(evaluation.periods[keep].reset_index(drop=True), evaluation.assets,
                         *(getattr(evaluation, name)[keep]
                           for name in ("realised", "mean", "scale", "probabilities", "weights")))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", default=str(OUTPUTS), help="the npz that m6.py --network wrote")
    parser.add_argument("--draws", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _t(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:+.2f}"


def markdown(summaries: dict, chosen: str, command: str, periods: dict[str, int]) -> str:
    lines = [f"The network's recorded outputs (`{OUTPUTS.name}`) calibrated six ways; RPS, t against the "
             f"covariance baseline on the same months (positive: worse), CRPS and the 90 % interval's "
             f"coverage by tercile of the forecast scale. Chosen on {CHOICE.split(' ')[0]}: **{chosen}**.",
             "", f"Command: `{command}`", ""]
    for span, rows in summaries.items():
        lines += [f"### {span}, {periods[span]} periods", "",
                  "| forecaster | mean RPS | t RPS | mean CRPS | t CRPS | 90 % coverage, low / mid / high |",
                  "|---|---|---|---|---|---|"]
        for name, result in rows.items():
            cover = result["coverage"][LEVEL_90]
            t_rps, t_crps = (result.get(key, {}).get("t", np.nan) for key in ("rps_vs_reference",
                                                                             "crps_vs_reference"))
            lines.append(f"| {name} | {result['rps']:.4f} | {_t(t_rps)} | {result['crps']:.4f} | "
                         f"{_t(t_crps)} | {cover['low']:.3f} / {cover['mid']:.3f} / {cover['high']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    command = shlex.join([".venv/bin/python", "benchmarks/m6_variants.py", *sys.argv[1:]])
    outputs = load_outputs(args.outputs)
    prices = pd.read_csv(paths.SAMPLE_PRICES, index_col=0, parse_dates=True)
    returns = distribution.log_returns(prices)
    assets, _, periods = outputs
    horizon_days = 20
    first_day = returns.index[returns.index > min(periods)][0]  # the grid m6.py's periods lie on
    table = distribution.periods(returns.index, horizon_days, str(first_day.date()))
    table = table[table["asof"].isin(list(periods))].reset_index(drop=True)
    if len(table) != len(periods):
        raise SystemExit(f"m6_variants.py: {len(periods)} recorded periods, {len(table)} found in the "
                         f"bundled prices with {horizon_days}-day periods")
    trailing = Trailing(returns[assets], horizon_days)
    covariance = [distribution.trailing_covariance(returns.iloc[:position], horizon_days)
                  for position in table["position"]]
    reference = m6.score_forecasts(returns, table, covariance, horizon_days, args.draws, args.seed)
    evaluations = {REFERENCE: reference}
    values = returns[assets].to_numpy()
    realised = np.array([values[position:position + horizon_days].sum(axis=0)
                         for position in table["position"]])
    for variant_name, variant in VARIANTS.items():
        for view, chosen in YearlyNetwork.VIEWS.items():
            forecasts = variant_forecasts(outputs, table, realised, trailing, variant, chosen)
            name = f"{'network' if view == 'first member' else 'ensemble'}, {variant_name}"
            for label, scored in ((name, forecasts), (f"{name}, zero mean", zero_mean(forecasts))):
                evaluations[label] = m6.score_forecasts(returns, table, scored, horizon_days, args.draws,
                                                        args.seed)
                print(f"{label}: RPS {evaluations[label].rps.mean():.4f}", file=sys.stderr, flush=True)
    summaries, counts = {}, {}
    for span, (start, end) in SPANS.items():
        inside = {name: within(evaluation, start, end) for name, evaluation in evaluations.items()}
        counts[span] = len(inside[REFERENCE].periods)
        summaries[span] = {name: m6.summary(evaluation, inside[REFERENCE])
                           for name, evaluation in inside.items()}
    choice = summaries[CHOICE]
    chosen = min(VARIANTS, key=lambda variant: choice[f"ensemble, {variant}, zero mean"]["rps"])
    data = {"command": command, "parameters": vars(args), "chosen": chosen, "periods": counts,
            "summaries": summaries}
    save_results("m6_variants", data, markdown(summaries, chosen, command, counts))


if __name__ == "__main__":
    main()
