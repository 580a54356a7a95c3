"""Wall time of the default run (what `make run` does once set up), split per notebook, how
much of it is kernel start-up and the TensorFlow import, and, with `--baseline REF`, the same
run of an earlier commit alternated with this tree's, so that both meet the same machine, and
the largest difference between their metrics and between their forecasts.

Usage: python benchmarks/end_to_end.py [--baseline REF] [--repeats N]
Writes reports/benchmarks/end_to_end.json and end_to_end.md.
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pandas as pd
import papermill
from results import save_results

from roicast import paths


def seconds(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def notebook_of(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    return path


def default_run(lib: Path | None) -> tuple[float, dict[str, float], dict, pd.DataFrame]:
    """Wall seconds, per-notebook seconds, metrics.json and the forecast of `roicast run` with no
    parameters, in a fresh work folder, with the library in `lib` (None: this tree's)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ROICAST_WORKDIR": tmp, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if lib is not None:
            env["PYTHONPATH"] = str(lib)
        wall = seconds(lambda: subprocess.run(
            [sys.executable, "-m", "roicast", "run", "--run-id", "e2e"], env=env, check=True,
            capture_output=True))
        run = Path(tmp) / "data" / "runs" / "e2e"
        metrics = json.loads((run / "metrics.json").read_text())
        forecast = pd.read_parquet(run / "forecasts" / f"{metrics['forecast']['asof']}.parquet")
    return wall, metrics["timings_s"], metrics, forecast


TIMING = re.compile(r"tim(e|ing)|seconds|wall|_s$")  # keys of measured durations
ENSEMBLE_R2 = "/metrics/roi_pct/ensemble/r2"  # a speed-up may move it by 0.002 at most (issue #23)


def numbers(record, prefix: str = "") -> dict[str, float]:
    """Every number of a nested record by its path, timings left out (they differ by design)."""
    if isinstance(record, dict):
        return {path: value for key, item in record.items() if not TIMING.search(str(key))
                for path, value in numbers(item, f"{prefix}/{key}").items()}
    if isinstance(record, list):
        return {path: value for i, item in enumerate(record)
                for path, value in numbers(item, f"{prefix}/{i}").items()}
    if isinstance(record, (int, float)) and not isinstance(record, bool):
        return {prefix: float(record)}
    return {}


def largest_differences(ours: tuple, theirs: tuple) -> list[str]:
    """The largest absolute difference between two runs' metrics and between their forecasts."""
    mine, other = numbers(ours[2]), numbers(theirs[2])
    shared = sorted(set(mine) & set(other))
    gaps = {path: abs(mine[path] - other[path]) for path in shared
            if not (math.isnan(mine[path]) and math.isnan(other[path]))}
    worst = max(gaps, key=gaps.get) if gaps else None
    keys = ["date", "asset", "step", "model"]
    joined = ours[3].merge(theirs[3], on=keys, suffixes=("", "_base"))
    values = [c for c in ours[3].columns if c not in keys and c != "method" and f"{c}_base" in joined]
    forecast_gap = max((joined[c] - joined[f"{c}_base"]).abs().max() for c in values)
    lines = [f"- metrics: {len(shared)} numbers in both runs ({len(set(mine) ^ set(other))} in one "
             f"only); largest absolute difference {gaps[worst]:.3g} ({worst})." if worst else
             "- metrics: no number in both runs.",
             f"- forecasts: {len(joined)} rows in both of {len(ours[3])} and {len(theirs[3])}; largest "
             f"absolute difference {forecast_gap:.3g} (ROI %)."]
    if ENSEMBLE_R2 in gaps:
        lines.append(f"- the ensemble's R² ({ENSEMBLE_R2}): {mine[ENSEMBLE_R2]:.6f} in this tree, "
                     f"{other[ENSEMBLE_R2]:.6f} in the baseline; difference {gaps[ENSEMBLE_R2]:.2g}.")
    return lines


def checkout(ref: str, folder: Path) -> Path:
    """The library of commit `ref`, exported from git into `folder`."""
    archive = subprocess.run(["git", "-C", str(paths.REPO_ROOT), "archive", ref], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "lib"


def fixed_costs(timings: dict[str, float], wall: float) -> tuple[dict, list[str]]:
    """Kernel start and TensorFlow import, measured apart, and their share of `wall`."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        import_tf = seconds(lambda: subprocess.run([sys.executable, "-c", "import tensorflow"],
                                                   check=True, capture_output=True))
        run = lambda nb: papermill.execute_notebook(str(nb), str(nb), kernel_name="python3",  # noqa: E731
                                                    progress_bar=False)
        empty = seconds(lambda: run(notebook_of(folder, "empty", "pass")))
        with_tf = seconds(lambda: run(notebook_of(folder, "tf", "import tensorflow")))
    uses_tf = [nb for nb in timings if nb not in ("01_collect", "02_preprocess")]
    fixed = empty * len(timings) + (with_tf - empty)  # one import: the preloaded server's
    costs = {"kernel_start_s": empty, "kernel_start_and_tf_import_s": with_tf,
             "tf_import_in_python_s": import_tf, "fixed_cost_s": fixed}
    lines = [f"- a papermill run of an empty notebook (kernel start): {empty:.1f} s; of a notebook "
             f"that imports TensorFlow: {with_tf:.1f} s; `import tensorflow` in a fresh Python: "
             f"{import_tf:.1f} s.",
             f"- fixed cost of {len(timings)} kernels and one TensorFlow import (the server that "
             f"{len(uses_tf)} kernels and the members' lanes fork from, importing while 01 and 02 run): "
             f"about {fixed:.0f} s, {fixed / wall:.0%} of this tree's median wall time."]
    return costs, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git commit to compare with, run alternately")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline_lib = checkout(args.baseline, Path(tmp)) if args.baseline else None
        runs: dict[str, list] = {"this tree": [], **({args.baseline: []} if args.baseline else {})}
        for _ in range(args.repeats):
            runs["this tree"].append(default_run(None))
            if baseline_lib is not None:
                runs[args.baseline].append(default_run(baseline_lib))
    walls = {name: statistics.median(done[0] for done in tried) for name, tried in runs.items()}
    notebooks = list(runs["this tree"][0][1])
    per_notebook = {name: {nb: statistics.median(done[1].get(nb, float("nan")) for done in tried)
                           for nb in notebooks} for name, tried in runs.items()}
    costs, cost_lines = fixed_costs(per_notebook["this tree"], walls["this tree"])
    names = list(runs)
    lines = [f"Default run, `roicast run` with no parameters, median of {args.repeats} run(s) each"
             + (", alternating" if args.baseline else "") + ", 2 CPU cores.", "",
             "| notebook | " + " | ".join(f"{name} (s)" for name in names) + " |",
             "|---|" + "---|" * len(names),
             *[f"| {nb} | " + " | ".join(f"{per_notebook[name][nb]:.1f}" for name in names) + " |"
               for nb in notebooks],
             "| **wall** | " + " | ".join(f"**{walls[name]:.0f}**" for name in names) + " |", ""]
    if args.baseline:
        lines.append(f"- this tree takes {walls['this tree'] / walls[args.baseline]:.2f} of "
                     f"{args.baseline}'s wall time.")
        lines += largest_differences(runs["this tree"][0], runs[args.baseline][0])
    lines += cost_lines
    result = {"repeats": args.repeats, "baseline": args.baseline, "wall_s": walls,
              "timings_s": per_notebook, **costs,
              "runs": {name: [done[:2] for done in tried] for name, tried in runs.items()}}
    save_results("end_to_end", result, "\n".join(lines))


if __name__ == "__main__":
    main()
