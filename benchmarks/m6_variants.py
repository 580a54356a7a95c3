"""The M6 network's recorded outputs calibrated four ways, chosen on 1995–2008, confirmed on 2009–2022.

`benchmarks/m6.py --network` keeps every yearly training's raw outputs (before calibration) in
reports/benchmarks/m6_network_outputs.npz. This script builds the network's monthly forecasts
from them again, without training, in four variants fixed before any was scored:

- 'as trained': what m6.py scores (training-residual correlation; scale calibrated by factor and
  power on the held-out windows, `network_distribution.Calibration`);
- 'anchored': the scale calibrated with the trailing 250-day scale as a second covariate
  (`factor · reference · (scale/reference)^power · (σ250/reference250)^anchor_power`, all by the
  held-out likelihood): the covariance baseline's edge is its 250 days of history, which the
  network's 60-day window lacks;
- 'trailing correlation': the assets' correlation of the last 250 daily returns (the
  covariance baseline's) instead of the training residuals';
- 'anchored, trailing correlation': both.

Each variant is scored as the first member ('network') and the members' mixture ('ensemble'),
with and without the mean, on three spans: 1995–2008 (where a variant is chosen: lowest mean
RPS of the ensemble without its mean), 2009–2022 (the confirmation, not looked at for the
choice) and all 28 years, each against the covariance baseline on the same months.

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
from scipy.optimize import minimize

from roicast import paths
from roicast.evaluation import m6
from roicast.models import distribution
from roicast.models.network_distribution import (
    Calibration,
    YearlyNetwork,
    load_outputs,
    mixture,
    view_forecast,
)

SPANS = {
    "1995–2008 (choice)": ("1995-01-01", "2008-12-31"),
    "2009–2022 (confirmation)": ("2009-01-01", "2022-12-31"),
    "1995–2022": ("1995-01-01", "2022-12-31"),
}
CHOICE = next(iter(SPANS))
ANCHOR_DAYS = 250


@dataclass(frozen=True)
class AnchoredCalibration:
    """`Calibration` with a second scale covariate, the trailing 250-day scale (`anchor`)."""

    shrink: float
    factor: float
    power: float
    reference: float
    anchor_power: float
    anchor_reference: float

    @classmethod
    def fit(cls, actual: np.ndarray, location: np.ndarray, scale: np.ndarray,
            anchor: np.ndarray) -> "AnchoredCalibration":
        shrink = Calibration.fit(actual, location, scale).shrink
        residual = actual - Calibration(shrink=shrink).location(location)
        reference = float(np.exp(np.mean(np.log(scale))))
        anchor_reference = float(np.exp(np.mean(np.log(anchor))))
        covariates = np.log(scale / reference), np.log(anchor / anchor_reference)

        def factor_at(powers: np.ndarray) -> float:
            exponent = 2 * (powers[0] * covariates[0] + powers[1] * covariates[1])
            return float(np.sqrt(np.mean((residual / reference) ** 2 / np.exp(exponent))))

        def negative_log_likelihood(powers: np.ndarray) -> float:
            return float(np.mean(powers[0] * covariates[0] + powers[1] * covariates[1])
                         + np.log(factor_at(powers)))

        powers = minimize(negative_log_likelihood, np.array([1.0, 0.0]), bounds=[Calibration.POWERS] * 2,
                          method="L-BFGS-B").x
        return cls(shrink, factor_at(powers), float(powers[0]), reference, float(powers[1]), anchor_reference)

    def location(self, location: np.ndarray) -> np.ndarray:
        return Calibration(shrink=self.shrink).location(location)

    def scale_with(self, scale: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        return (self.factor * self.reference * (scale / self.reference) ** self.power
                * (anchor / self.anchor_reference) ** self.anchor_power)


class Trailing:
    """The trailing 250-day scale (H days) and correlation of the daily log returns up to a day."""

    def __init__(self, returns: pd.DataFrame, horizon_days: int):
        self.returns, self.horizon_days = returns, horizon_days
        self.sd = returns.rolling(ANCHOR_DAYS).std() * np.sqrt(horizon_days)

    def scale(self, days: np.ndarray) -> np.ndarray:
        return self.sd.loc[pd.DatetimeIndex(days)].to_numpy()

    def correlation(self, day: pd.Timestamp) -> np.ndarray:
        return np.corrcoef(self.returns.loc[:day].to_numpy()[-ANCHOR_DAYS:], rowvar=False)


def variant_forecasts(outputs, trailing: Trailing, anchored: bool, trailing_correlation: bool,
                      chosen: slice) -> list[distribution.Forecast]:
    """One view's forecast for every recorded period under a variant."""
    assets, years, periods = outputs
    fitted = {}
    for year, seen in years.items():
        mean, sd = mixture(seen.val_location[chosen], seen.val_scale[chosen])
        calibration = (AnchoredCalibration.fit(seen.val_actual, mean, sd, trailing.scale(seen.val_asof))
                       if anchored else Calibration.fit(seen.val_actual, mean, sd))
        fitted[year] = calibration, seen.correlation(chosen)
    forecasts = []
    for asof, (location, scale) in periods.items():
        calibration, correlation = fitted[asof.year]
        if trailing_correlation:
            correlation = trailing.correlation(asof)
        if anchored:
            mean, sd = mixture(location[chosen], scale[chosen])
            sd = calibration.scale_with(sd, trailing.scale(np.array([asof]))[0])
            forecasts.append(distribution.Forecast(assets, calibration.location(mean),
                                                   correlation * np.outer(sd, sd)))
        else:
            forecasts.append(view_forecast(assets, location[chosen], scale[chosen], correlation, calibration))
    return forecasts


VARIANTS = {"as trained": (False, False), "anchored": (True, False), "trailing correlation": (False, True),
            "anchored, trailing correlation": (True, True)}


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
    lines = [f"The network's recorded outputs (`{OUTPUTS.name}`) calibrated four ways; RPS, t against the "
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
    for variant, (anchored, trailing_correlation) in VARIANTS.items():
        for view, chosen in YearlyNetwork.VIEWS.items():
            forecasts = variant_forecasts(outputs, trailing, anchored, trailing_correlation, chosen)
            name = f"{'network' if view == 'first member' else 'ensemble'}, {variant}"
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
