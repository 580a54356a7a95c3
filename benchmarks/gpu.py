"""roicast's training on a GPU against the same network in plain PyTorch (benchmarks/plain_torch.py).

For each Keras backend a fresh process (KERAS_BACKEND is read once, at Keras's import) runs
roicast's own `training.train` on synthetic prices (scale.py's correlated random walks) for
both networks, `guide` and the default `highway`, at batch 32 and 128; the PyTorch process also
trains the plain PyTorch network on the same arrays, in the same process, on the same device.
Reports the median seconds per epoch without the first (tracing and compilation), and
roicast's ratio to plain PyTorch. The highway starts from its initial weights rather than
the ridge fit (`skip_warm_start`). Runs on whatever accelerator is present, and needs no
TensorFlow: see gpu_device.sh for a machine with PyTorch and JAX but nothing else.

With --levers, roicast also trains with each of LEVERS applied (callbacks left out, more
steps per call), to see where its time goes; the results go to gpu_levers.json and .md.

Usage: python benchmarks/gpu.py [--backends torch jax] [--epochs 4] [--budget 300]
       [--data 20x2.5 500x20] [--batches 128 32] [--architectures guide highway] [--levers]
Writes reports/benchmarks/gpu.json and gpu.md.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

from results import save_results

RESULT = "RESULT "  # prefix of a measurement line on a measuring process's output
SHIPPED = "as shipped"


def _keep_callbacks(training, keep):
    make = training.make_callbacks
    return mock.patch.object(training, "make_callbacks",
                             lambda *args, **kwargs: [c for c in make(*args, **kwargs) if keep(c)])


def _with_model_checkpoint(training, keras):
    """The guide's ModelCheckpoint added back: a .keras file on every improving epoch."""
    make = training.make_callbacks

    def callbacks(params, work_dir, *args, **kwargs):
        checkpoint = keras.callbacks.ModelCheckpoint(str(Path(work_dir) / "checkpoint.keras"),
                                                     monitor="val_loss", save_best_only=True)
        return [checkpoint, *make(params, work_dir, *args, **kwargs)]
    return mock.patch.object(training, "make_callbacks", callbacks)


LEVERS = {  # name: (training module, keras) -> a context in which roicast trains so
    "with the guide's ModelCheckpoint (a .keras file per improving epoch)": _with_model_checkpoint,
    "without TerminateOnNaN (a host sync per batch)": lambda training, keras: _keep_callbacks(
        training, lambda c: not isinstance(c, keras.callbacks.TerminateOnNaN)),
    "no callbacks but the epoch timer": lambda training, keras: _keep_callbacks(
        training, lambda c: isinstance(c, training.EpochTimer)),
    "steps_per_execution 64 (not on torch)": lambda training, keras: mock.patch.object(
        training, "STEPS_PER_EXECUTION", 64),
}


def measure(backend: str, args: argparse.Namespace) -> None:
    """In a process whose KERAS_BACKEND is `backend`: print one RESULT line per measurement."""
    import keras
    from scale import synthetic_prices

    from roicast.config import RunParams
    from roicast.features import preprocess
    from roicast.models import backends, training

    plain = backend == "torch" and importlib.util.find_spec("torch") is not None
    if plain:
        import plain_torch
    skip_warm_start(training)
    deadline = time.time() + args.seconds
    for data in args.data:
        n_assets, years = data.split("x")
        prices = synthetic_prices(int(n_assets), float(years))
        arrays, _, _ = preprocess.build_dataset(prices, RunParams())
        shape = {"data": data, "assets": int(n_assets), "days": len(prices),
                 "train_windows": len(arrays.train_idx)}
        for batch in args.batches:
            for architecture in args.architectures:
                if time.time() > deadline:
                    print(f"skipped {data} {architecture} {batch}: past the time budget", file=sys.stderr)
                    continue
                config = {**shape, "architecture": architecture, "batch": batch}
                levers = [name for name in LEVERS if args.levers and not (
                    backend == "torch" and name.startswith("steps_per_execution"))]
                runs = ([("roicast", backend, name) for name in [SHIPPED, *levers]]
                        + ([("plain PyTorch", "torch", SHIPPED)] if plain else []))
                for who, framework, variant in runs:
                    try:
                        if who == "roicast":
                            params = RunParams(architecture=architecture, batch_size=batch,
                                               epochs=args.epochs, backend=backend)
                            lever = LEVERS[variant](training, keras) if variant in LEVERS else nullcontext()
                            with tempfile.TemporaryDirectory() as work, lever:
                                info = training.train(arrays, params, Path(work), verbose=0).info
                            seconds, device = info["epoch_seconds"], info["device"]
                        else:
                            seconds = plain_torch.train_epochs(arrays, architecture, batch, args.epochs)
                            device = backends.device()
                    except Exception:  # one failed configuration must not lose the others
                        traceback.print_exc()
                        continue
                    line = {**config, "who": who, "backend": framework, "variant": variant, "device": device,
                            "epoch_seconds": seconds, "median_epoch_s": statistics.median(seconds[1:])}
                    print(RESULT + json.dumps(line), flush=True)


def skip_warm_start(training) -> None:
    """Leave the highway at its initial weights: the ridge fit runs before the timed epochs and,
    at 500 assets, takes longer than all of them; each epoch's work is the same without it."""
    training.warm_start_highway = lambda *args, **kwargs: None


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in ("keras", "torch", "jax", "tensorflow"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def run_backend(backend: str, seconds: float, argv: list[str]) -> list[dict]:
    """One measuring process; its RESULT lines, also those printed before a crash."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, __file__, "--measure", backend, "--seconds", str(seconds), *argv]
    found = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
        for line in process.stdout:
            if line.startswith(RESULT):
                found.append(json.loads(line[len(RESULT):]))
                r = found[-1]
                print(f"{r['who']} ({r['backend']}, {r['variant']}) {r['data']} {r['architecture']} "
                      f"batch {r['batch']}: {r['median_epoch_s']:.3f} s per epoch on {r['device']}",
                      flush=True)
            else:
                print(line, end="", flush=True)
    return found


def markdown(results: list[dict], epochs: int, found: dict) -> str:
    devices = sorted({r["device"] for r in results}) or ["none"]
    backends = sorted({r["backend"] for r in results if r["who"] == "roicast"})
    table: dict[tuple, dict] = {}
    for r in results:
        if r["variant"] != SHIPPED:
            continue
        key = (r["assets"], r["days"], r["train_windows"], r["architecture"], r["batch"])
        table.setdefault(key, {})[r["who"] if r["who"] != "roicast" else r["backend"]] = r["median_epoch_s"]
    head = "| data | network | batch | plain PyTorch (s) | " + " | ".join(
        f"roicast on {b} (s) | ratio" for b in backends) + " |"
    lines = [f"On {', '.join(devices)}; {', '.join(f'{k} {v}' for k, v in found.items())}. "
             f"{epochs} epochs a run; median seconds per epoch without the first (tracing, "
             "compilation). An epoch is the training pass and the validation pass; roicast's "
             "includes its callbacks (early stopping with the best weights in memory, CSV log). "
             "Ratio: roicast's time over plain PyTorch's.",
             "", head, "|---|---|---|---|" + "---|---|" * len(backends)]
    for (assets, days, windows, architecture, batch), row in sorted(
            table.items(), key=lambda item: (item[0][0], item[0][3], -item[0][4])):
        plain = row.get("plain PyTorch")
        cells = [f"{row[b]:.3f} | {row[b] / plain:.1f}" if b in row and plain else
                 (f"{row[b]:.3f} | —" if b in row else "— | —") for b in backends]
        lines.append(f"| {assets} assets × {days} days ({windows} training windows) | {architecture} "
                     f"| {batch} | {f'{plain:.3f}' if plain else '—'} | " + " | ".join(cells) + " |")
    return "\n".join(lines + lever_table(results)) + "\n"


def lever_table(results: list[dict]) -> list[str]:
    """roicast's median epoch with each lever, against plain PyTorch on the same configuration."""
    levers = [r for r in results if r["who"] == "roicast" and r["variant"] != SHIPPED]
    if not levers:
        return []
    plain = {(r["data"], r["architecture"], r["batch"]): r["median_epoch_s"]
             for r in results if r["who"] == "plain PyTorch"}
    lines = ["", "| data | network | batch | backend | roicast | median epoch (s) | ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in results if r["who"] == "roicast"),
                    key=lambda r: (r["assets"], r["architecture"], -r["batch"], r["backend"])):
        base = plain.get((r["data"], r["architecture"], r["batch"]))
        ratio = f"{r['median_epoch_s'] / base:.1f}" if base else "—"
        lines.append(f"| {r['assets']} assets × {r['days']} days | {r['architecture']} | {r['batch']} "
                     f"| {r['backend']} | {r['variant']} | {r['median_epoch_s']:.3f} | {ratio} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["torch", "jax"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--budget", type=float, default=300,
                        help="seconds for all backends; a configuration is not started after it")
    parser.add_argument("--data", nargs="+", default=["500x20", "20x2.5"], help="ASSETSxYEARS")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 32])
    parser.add_argument("--architectures", nargs="+", default=["guide", "highway"])
    parser.add_argument("--levers", action="store_true", help="also train with each of LEVERS")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args)
        return
    shared = ["--epochs", str(args.epochs), "--data", *args.data, "--batches", *map(str, args.batches),
              "--architectures", *args.architectures, *(["--levers"] if args.levers else [])]
    start, results = time.time(), []
    for k, backend in enumerate(args.backends):
        share = start + args.budget * (k + 1) / len(args.backends) - time.time()
        results += run_backend(backend, max(share, 0), shared)
    found = versions()
    save_results("gpu_levers" if args.levers else "gpu", {"versions": found, "epochs": args.epochs,
                                                          "results": results},
                 markdown(results, args.epochs, found))


if __name__ == "__main__":
    main()
