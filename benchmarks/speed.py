"""Speed against the guide: the guide's script and roicast train on the same CSV, alternating.

Each configuration runs `--repeats` times in its own process, in turn, so drifts of the
machine hit all of them alike. Reports the median epoch time without the first (tracing)
epoch, the first epoch, fit and wall time, peak memory, best validation loss, and each
configuration's per-epoch ratio to the guide.

Usage: python benchmarks/speed.py [--repeats 3] [--epochs 15]
Writes reports/benchmarks/speed.json and speed.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from results import save_results

from roicast import paths

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "guide script": [sys.executable, str(HERE / "reference" / "guide_train.py")],
    "roicast, architecture=guide, smoothed input": [
        sys.executable, str(HERE / "train_roicast.py"), "-p", "architecture", "guide",
        "-p", "input_features", "smoothed"],
    "roicast, architecture=guide, smoothed input, batch 128": [
        sys.executable, str(HERE / "train_roicast.py"), "-p", "architecture", "guide",
        "-p", "input_features", "smoothed", "-p", "batch_size", "128"],
    "roicast default (highway)": [sys.executable, str(HERE / "train_roicast.py")],
}


def sample_csv(folder: Path) -> Path:
    """The bundled prices of the default run: 20 stocks, 2020-06-29 to 2022-12-28."""
    prices = pd.read_csv(paths.SAMPLE_PRICES, index_col=0, parse_dates=True).loc["2020-06-28":]
    path = folder / "prices.csv"
    prices.to_csv(path)
    return path


def summarise(results: list[dict]) -> dict:
    later = [s for r in results for s in r["epoch_seconds"][1:]]
    return {
        "runs": len(results),
        "median_epoch_s": statistics.median(later),
        "first_epoch_s": statistics.median(r["epoch_seconds"][0] for r in results),
        "fit_s": statistics.median(r["fit_seconds"] for r in results),
        "wall_s": statistics.median(r["wall_seconds"] for r in results),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "best_val_loss": statistics.median(r["best_val_loss"] for r in results),
        "epochs_run": statistics.median(r["epochs_run"] for r in results),
    }


def markdown(summary: dict[str, dict], epochs: int, repeats: int) -> str:
    guide = summary["guide script"]["median_epoch_s"]
    lines = [f"Up to {epochs} epochs (early stopping may end sooner), {repeats} alternating runs "
             f"each, {os.cpu_count()} CPU cores.", "",
             "| configuration | median epoch (s) | ratio to guide | first epoch (s) | fit (s) "
             "| wall (s) | peak RSS (MB) | best val loss | epochs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['median_epoch_s']:.3f} | {s['median_epoch_s'] / guide:.2f} "
                     f"| {s['first_epoch_s']:.1f} | {s['fit_s']:.1f} | {s['wall_s']:.1f} "
                     f"| {s['peak_rss_mb']:.0f} | {s['best_val_loss']:.5f} | {s['epochs_run']:.0f} |")
    lines += ["", "Validation losses are not comparable across rows one to one: the guide's script "
              "scales with a MinMaxScaler fitted on every row (test included) and validates on "
              "`validation_split`; roicast fits on the training period only."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory() as tmp:
        csv = sample_csv(Path(tmp))
        for repeat in range(args.repeats):
            for name, command in CONFIGS.items():
                out = Path(tmp) / "result.json"
                subprocess.run([*command, str(csv), str(out), "--epochs", str(args.epochs)],
                               check=True, env=env, capture_output=True)
                results[name].append(json.loads(out.read_text()))
                epoch = statistics.median(results[name][-1]["epoch_seconds"][1:])
                print(f"repeat {repeat + 1}: {name}: median epoch {epoch:.3f} s", flush=True)
    summary = {name: summarise(runs) for name, runs in results.items()}
    save_results("speed", {"summary": summary, "runs": results}, markdown(summary, args.epochs, args.repeats))


if __name__ == "__main__":
    main()
