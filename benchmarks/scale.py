"""How time and memory grow with assets and years, on synthetic prices.

Prices are correlated random walks (one market factor plus noise, about 1.6 % daily
volatility, 0.3 correlation). For each size a fresh process runs collect-from-CSV,
preprocess, one training epoch of the default network and the evaluation (every baseline,
metrics), timing each stage and reading the peak resident memory after it.

Usage: python benchmarks/scale.py [--assets 20 100 500] [--years 2.5 10 20]
Writes reports/benchmarks/scale.json and scale.md.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from results import save_results

TRADING_DAYS = 252


def synthetic_prices(n_assets: int, years: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_days = int(years * TRADING_DAYS)
    market = rng.normal(0.0003, 0.009, size=(n_days, 1))
    noise = rng.normal(0, 0.013, size=(n_days, n_assets))
    returns = market + noise
    prices = 100 * np.exp(np.cumsum(returns, axis=0))
    dates = pd.bdate_range("2000-01-03", periods=n_days, name="date")
    return pd.DataFrame(prices, index=dates, columns=[f"SYN{i:04d}" for i in range(n_assets)])


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(csv: Path) -> dict:
    """Run the four stages in this process; return seconds and peak memory after each."""
    from roicast.config import validate_params
    from roicast.data import collect
    from roicast.evaluation import evaluate
    from roicast.features import preprocess
    from roicast.models import training

    params = validate_params({"source": "csv", "csv_path": str(csv), "start": "1990-01-01",
                              "epochs": 1})
    stages = {}
    start = time.perf_counter()
    prices = collect.collect_prices(params).prices
    stages["collect"] = {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb()}
    start = time.perf_counter()
    arrays, scalers, _ = preprocess.build_dataset(prices, params)
    stages["preprocess"] = {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb()}
    with tempfile.TemporaryDirectory() as work:
        result = training.train(arrays, params, work_dir=work, verbose=0)
    stages["train_one_epoch"] = {"seconds": result.info["fit_seconds"], "peak_mb": _peak_mb()}
    start = time.perf_counter()
    test = arrays.test_idx
    forecasts = {"hybrid": training.predict(result.model, arrays, test),
                 **evaluate.baseline_forecasts(arrays, scalers, test)}
    evaluate.score(arrays, scalers, forecasts, test)
    stages["evaluate"] = {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb()}
    return {"rows": len(prices), "stages": stages}


def growth_exponents(results: list[dict]) -> dict[str, float]:
    """Least-squares slope of log(seconds) on log(assets × days) for each stage.

    1 is linear in the data's size; above 1 grows faster than the data.
    """
    size = np.log([r["assets"] * r["rows"] for r in results])
    return {stage: float(np.polyfit(size, np.log([r["stages"][stage]["seconds"] for r in results]), 1)[0])
            for stage in results[0]["stages"]}


def markdown(results: list[dict]) -> str:
    lines = ["| assets | years | days | collect (s) | preprocess (s) | 1 epoch (s) | evaluate (s) "
             "| peak RSS (MB) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["stages"]
        lines.append(f"| {r['assets']} | {r['years']} | {r['rows']} | {s['collect']['seconds']:.2f} "
                     f"| {s['preprocess']['seconds']:.2f} | {s['train_one_epoch']['seconds']:.1f} "
                     f"| {s['evaluate']['seconds']:.1f} | {s['evaluate']['peak_mb']:.0f} |")
    if len(results) > 2:
        exponents = ", ".join(f"{stage} {b:.2f}" for stage, b in growth_exponents(results).items())
        lines += ["", f"Growth of time with the data's size (assets × days), as the exponent b of "
                  f"time ∝ size^b fitted over the rows above (1 = linear): {exponents}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--years", type=float, nargs="+", default=[2.5, 10, 20])
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_assets in args.assets:
            for years in args.years:
                csv = Path(tmp) / f"prices_{n_assets}_{years}.csv"
                synthetic_prices(n_assets, years).to_csv(csv)
                env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "ROICAST_WORKDIR": tmp}
                done = subprocess.run([sys.executable, __file__, "--measure", str(csv)], env=env,
                                      capture_output=True, text=True, check=True)
                result = {"assets": n_assets, "years": years,
                          **json.loads(done.stdout.strip().splitlines()[-1])}
                results.append(result)
                print(markdown([result]).splitlines()[2], flush=True)
    save_results("scale", results, markdown(results))


if __name__ == "__main__":
    main()
