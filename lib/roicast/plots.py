"""Every figure of the notebooks and reports, one function each, returning the Figure.

Functions take the library's own tables (price frames, predictions_frame, metrics tables)
so a notebook cell is one call; nothing here computes a number that is not on screen.
"""

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from roicast.features.dataset import PERIODS, Dataset

PREDICTOR_COLOURS = {"hybrid": "C0", "ensemble": "C0", "ridge": "C1", "persistence": "C2",
                     "window_mean": "C3", "train_mean": "C4", "ceiling": "C7"}


def _grid(n: int, columns: int = 4, size: tuple[float, float] = (3.6, 2.4)):
    rows = int(np.ceil(n / columns))
    columns = min(columns, n)
    fig, axes = plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows),
                             sharex=True, squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def plot_normalised_prices(prices: pd.DataFrame) -> Figure:
    """Each asset's price divided by its first price: growth paths on one log axis."""
    first = prices.apply(lambda column: column.dropna().iloc[0] if column.notna().any() else np.nan)
    fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    (prices / first).plot(ax=ax, logy=True, linewidth=0.9, legend=False)
    ax.set(title="Prices relative to each asset's first price (log scale)", xlabel="", ylabel="× first price")
    ax.legend(ncols=min(len(prices.columns), 10), fontsize=7, loc="upper left")
    return fig


def plot_missing_heatmap(missing: pd.DataFrame) -> Figure:
    """Where prices were not observed before forward filling, per asset and date."""
    fig, ax = plt.subplots(figsize=(11, 0.25 * len(missing.columns) + 1.5), layout="constrained")
    share = missing.mean()
    labels = [f"{asset} ({share[asset]:.1%})" for asset in missing.columns]
    ax.imshow(missing.T.to_numpy(dtype=float), aspect="auto", cmap="Greys", interpolation="nearest",
              vmin=0, vmax=1)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ticks = np.linspace(0, len(missing) - 1, 6).astype(int)
    ax.set_xticks(ticks, [missing.index[i].strftime("%Y-%m-%d") for i in ticks])
    ax.set_title("Days without a price (dark), before forward filling")
    return fig


def plot_return_distributions(stages: dict[str, np.ndarray]) -> Figure:
    """Histogram of all assets' daily values after each preprocessing step."""
    fig, axes = plt.subplots(1, len(stages), figsize=(3.6 * len(stages), 3), layout="constrained")
    for ax, (name, values) in zip(np.atleast_1d(axes), stages.items(), strict=True):
        flat = np.asarray(values, float).ravel()
        finite = flat[np.isfinite(flat)]
        low, high = np.quantile(finite, [0.005, 0.995])
        ax.hist(np.clip(finite, low, high), bins=80, color="C0")
        ax.set(title=name, yticks=[])
        ax.text(0.02, 0.95, f"sd {finite.std():.3g}\nNaN {np.mean(~np.isfinite(flat)):.1%}",
                transform=ax.transAxes, va="top", fontsize=8)
    return fig


def plot_correlation_heatmap(returns: pd.DataFrame) -> Figure:
    """Correlation of the assets' daily returns, clustered so related assets sit together
    (a single asset has nothing to cluster: its one cell is drawn as is)."""
    several = len(returns.columns) > 1
    grid = sns.clustermap(returns.corr(), cmap="vlag", center=0, vmin=-1, vmax=1,
                          row_cluster=several, col_cluster=several,
                          figsize=(7, 7), annot=len(returns.columns) <= 12, fmt=".1f",
                          cbar_pos=(0.02, 0.82, 0.03, 0.15))
    grid.figure.suptitle("Correlation of daily log returns", y=1.01)
    return grid.figure


def plot_periods(dataset: Dataset) -> Figure:
    """The cross-asset mean of the target over time, with the target dates of the train /
    validation / test samples shaded."""
    fig, ax = plt.subplots(figsize=(11, 3), layout="constrained")
    ax.plot(pd.to_datetime(dataset.dates), dataset.target.mean(axis=1), color="0.3", linewidth=0.7)
    for name, colour in zip(PERIODS, ("C0", "C1", "C3"), strict=True):
        indices = dataset.indices(name)
        when = pd.to_datetime(dataset.target_rows(indices[[0, -1]], "dates"))
        ax.axvspan(when[0], when[1], color=colour, alpha=0.15, label=f"{name}: {len(indices)} windows")
    ax.set(title="Mean scaled target across assets, and the three periods", ylabel="scaled target")
    ax.legend(loc="upper left", ncols=3)
    return fig


def plot_history(history: pd.DataFrame) -> Figure:
    """Training and validation loss per epoch, and the learning rate."""
    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(11, 3.2), layout="constrained")
    epochs = np.arange(1, len(history) + 1)
    loss_ax.plot(epochs, history["loss"], label="training")
    loss_ax.plot(epochs, history["val_loss"], label="validation")
    best = int(np.argmin(history["val_loss"].to_numpy())) + 1
    loss_ax.axvline(best, color="0.5", linestyle=":", label=f"best epoch {best}")
    loss_ax.set(title="Loss", xlabel="epoch", yscale="log")
    loss_ax.legend()
    rate = "learning_rate" if "learning_rate" in history else "lr"
    if rate in history:
        lr_ax.step(epochs, history[rate], where="post")
    lr_ax.set(title="Learning rate", xlabel="epoch", yscale="log")
    return fig


def plot_forecast_grid(frame: pd.DataFrame, predictors: list[str], column_suffix: str = "_roi_pct") -> Figure:
    """Actual and forecast ROI over the test period, one panel per asset."""
    assets = frame["asset"].unique()
    fig, axes = _grid(len(assets))
    for ax, asset in zip(axes, assets, strict=False):
        rows = frame[frame["asset"] == asset]
        ax.plot(rows["date"], rows[f"actual{column_suffix}"], color="black", linewidth=1, label="actual")
        for name in predictors:
            ax.plot(rows["date"], rows[f"{name}{column_suffix}"], linewidth=0.8,
                    color=PREDICTOR_COLOURS.get(name), label=name)
        ax.set_title(asset, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle("Smoothed daily ROI (%) over the test period: actual and forecasts")
    return fig


def plot_forecast_fan(recent: pd.DataFrame, frame: pd.DataFrame, model: str) -> Figure:
    """Per asset, the last days' actual smoothed ROI, then `model`'s forecast and its interval."""
    fig, axes = _grid(len(recent.columns))
    chosen = frame[frame["model"] == model]
    for ax, asset in zip(axes, recent.columns, strict=False):
        rows = chosen[chosen["asset"] == asset]
        ax.plot(recent.index, recent[asset], color="black", linewidth=1, label="actual")
        ax.fill_between(rows["date"], rows["lower_roi_pct"], rows["upper_roi_pct"],
                        color=PREDICTOR_COLOURS.get(model, "C0"), alpha=0.25, label="interval")
        ax.plot(rows["date"], rows["forecast_roi_pct"], color=PREDICTOR_COLOURS.get(model, "C0"),
                marker=".", linewidth=1.2, label=model)
        ax.axhline(0, color="0.7", linewidth=0.6)
        ax.set_title(asset, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Smoothed daily ROI (%): the last {len(recent)} days, then the {model} forecast")
    return fig


def plot_error_heatmap(per_asset: pd.DataFrame, metric: str = "mae") -> Figure:
    """One cell per asset and predictor: where forecasts go wrong."""
    table = per_asset.pivot(index="asset", columns="predictor", values=metric)
    table = table[table.mean().sort_values().index]
    fig, ax = plt.subplots(figsize=(1.1 * len(table.columns) + 2, 0.3 * len(table) + 1.5),
                           layout="constrained")
    sns.heatmap(table, annot=True, fmt=".3f", cmap="rocket_r", ax=ax, annot_kws={"fontsize": 7})
    ax.set(title=f"{metric.upper()} per asset and predictor", xlabel="", ylabel="")
    return fig


def plot_residuals(frame: pd.DataFrame, predictors: list[str], column_suffix: str = "_roi_pct") -> Figure:
    """Distribution of forecast errors (forecast - actual) of each predictor."""
    errors = pd.DataFrame({name: frame[f"{name}{column_suffix}"] - frame[f"actual{column_suffix}"]
                           for name in predictors}).melt(var_name="predictor", value_name="error")
    fig, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
    sns.histplot(errors, x="error", hue="predictor", element="step", fill=False, bins=80,
                 stat="density", common_norm=False, ax=ax,
                 palette={name: PREDICTOR_COLOURS.get(name, "C5") for name in predictors})
    ax.set(title="Forecast errors over the test period (ROI %)", xlabel="forecast - actual (%)")
    return fig


def plot_attention(weights: np.ndarray) -> Figure:
    """Attention each window position receives, averaged over heads, queries and test windows."""
    fig, ax = plt.subplots(figsize=(9, 2.8), layout="constrained")
    lags = np.arange(-len(weights) + 1, 1)
    ax.bar(lags, weights, color="C0")
    ax.axhline(1 / len(weights), color="0.4", linestyle=":", label="uniform")
    ax.set(title="Mean attention weight by position in the window", xlabel="day relative to the last day",
           ylabel="weight")
    ax.legend()
    return fig


def plot_skill(table: pd.DataFrame, metric: str = "skill_vs_persistence") -> Figure:
    """Every predictor's skill against persistence; positive beats repeating yesterday."""
    values = table[metric].sort_values()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(values) + 1), layout="constrained")
    ax.barh(values.index, values, color=[PREDICTOR_COLOURS.get(name, "C5") for name in values.index])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set(title="MSE skill against persistence (test period)", xlabel="1 - MSE / MSE(persistence)")
    return fig


def plot_members(table: pd.DataFrame, metric: str = "r2") -> Figure:
    """The ensemble beside each member and each baseline, on one metric."""
    values = table[metric].sort_values()
    colours = ["C0" if name.startswith("ensemble") else "C9" if name.startswith("member_")
               else PREDICTOR_COLOURS.get(name, "C5") for name in values.index]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(values) + 1), layout="constrained")
    ax.barh(values.index, values, color=colours)
    members = values[values.index.str.startswith("member_")]
    if len(members):
        ax.axvline(members.mean(), color="C9", linestyle=":", label="mean of members")
        ax.legend(loc="lower right")
    ax.set(title=f"{metric} on the test period", xlabel=metric)
    return fig


def plot_equity(cumulative: pd.DataFrame) -> Figure:
    """Growth of one unit invested in each strategy over the test period."""
    fig, ax = plt.subplots(figsize=(9, 3.2), layout="constrained")
    (1 + cumulative).plot(ax=ax)
    ax.axhline(1, color="0.5", linewidth=0.7)
    ax.set(title="Value of 1 invested, after costs", xlabel="", ylabel="value")
    return fig


SWEEP_LABELS = {"relative_loss": "validation loss / persistence's", "loss": "best validation loss"}


def plot_sweep(rows: list[dict], swept: list[str], metric: str = "relative_loss",
               chosen: str | None = None) -> Figure:
    """Each succeeded run's validation figure against each swept parameter, the chosen run starred.

    Validation only: the sweep chooses on it, and the test period stays a check of that choice.
    """
    fig, axes = plt.subplots(1, max(len(swept), 1), figsize=(4.5 * max(len(swept), 1), 3.2),
                             squeeze=False, layout="constrained")
    frame = pd.DataFrame([{**{k: str(v) for k, v in row["params"].items()}, "run_id": row["run_id"],
                           "value": row["validation"][metric]} for row in rows
                          if row["status"] == "succeeded" and row["validation"][metric] is not None])
    for ax, name in zip(axes.flat, swept, strict=False):
        if not frame.empty:
            ax.scatter(frame[name], frame["value"], color="C0", alpha=0.5, label="run")
            means = frame.groupby(name, sort=False)["value"].mean()
            ax.plot(means.index, means.to_numpy(), color="C0", label="mean")
            best = frame[frame["run_id"] == chosen]
            if not best.empty:
                ax.scatter(best[name], best["value"], marker="*", s=200, color="C3", zorder=3,
                           label="chosen")
        if metric == "relative_loss":
            ax.axhline(1, color=PREDICTOR_COLOURS["persistence"], linestyle=":", label="persistence")
        ax.set(title=name, xlabel=name, ylabel=SWEEP_LABELS[metric])
    if axes.flat[0].get_legend_handles_labels()[0]:
        axes.flat[0].legend(fontsize=7)
        fig.suptitle("Validation figure of each run (lower is better)")
    return fig


def plot_walk_forward(folds: pd.DataFrame, space: str = "scaled", metric: str = "r2") -> Figure:
    """`metric` of each predictor in each walk-forward fold: how much it moves between periods."""
    chosen = folds[(folds["space"] == space) & (folds["metric"] == metric)]
    chosen = chosen.assign(period=chosen["test_start"] + " to " + chosen["test_end"])
    order = chosen.groupby("predictor")["value"].mean().sort_values(ascending=False).index
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(order) + 1.2), layout="constrained")
    sns.barplot(chosen, y="predictor", x="value", hue="period", order=order, ax=ax)
    ax.set(title=f"Walk-forward folds: {metric} ({space}) per test block", xlabel=metric, ylabel="")
    ax.legend(fontsize=7, title="test block", title_fontsize=7)
    return fig


def plot_error_by_horizon(errors: pd.DataFrame, space: str = "roi_pct", metric: str = "rmse") -> Figure:
    """`metric` of each multi-step predictor against the number of days ahead."""
    chosen = errors[errors["space"] == space]
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    sns.lineplot(chosen, x="horizon", y=metric, hue="predictor", marker="o", ax=ax)
    ax.set(title=f"Error by horizon ({metric}, {space})", xlabel="days ahead")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def plot_ic_by_year(ic: pd.DataFrame) -> Figure:
    """Each predictor's mean daily rank IC per test year with its 95 % band (`study.ic_by_year`):
    whether an edge holds year after year or lives in a few years."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * ic["label"].nunique() + 2), 3.8), layout="constrained")
    names = list(dict.fromkeys(ic["predictor"]))
    offsets = np.linspace(-0.3, 0.3, len(names)) if len(names) > 1 else np.zeros(1)
    labels = list(dict.fromkeys(ic["label"]))
    for offset, name in zip(offsets, names, strict=True):
        rows = ic[ic["predictor"] == name]
        x = np.array([labels.index(label) for label in rows["label"]]) + offset
        ax.errorbar(x, rows["ic"], yerr=[rows["ic"] - rows["low"], rows["high"] - rows["ic"]], fmt="o",
                    markersize=3, capsize=2, color=PREDICTOR_COLOURS.get(name), label=name)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 12 else 0)
    ax.set(title="Daily rank IC with tomorrow's return, per test year (95 % band)", xlabel="",
           ylabel="mean daily IC")
    ax.legend(fontsize=7, ncols=len(names))
    return fig


def plot_pit(pit: dict[str, np.ndarray], bins: int = 10) -> Figure:
    """Calibration: the histogram of each predictor's probability integral transform (its forecast
    CDF at the realised return). A calibrated forecast is flat at 1; a U too narrow, a hump too wide."""
    fig, axes = _grid(len(pit), columns=min(len(pit), 4), size=(3.4, 2.6))
    for ax, (name, values) in zip(axes, pit.items(), strict=False):
        ax.hist(np.ravel(values), bins=np.linspace(0, 1, bins + 1), density=True,
                color=PREDICTOR_COLOURS.get(name, "C5"), alpha=0.8)
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8)
        ax.set(title=f"{name} ({np.size(values)} forecasts)", xlabel="PIT", ylabel="density")
    fig.suptitle("Calibration of the H-day return distributions (flat = calibrated)")
    return fig


def plot_rank_probabilities(probabilities: pd.DataFrame, realised: pd.Series, title: str) -> Figure:
    """One row per asset: the forecast probability of each quintile of the universe's returns,
    with a box on the quintile it landed in."""
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(probabilities) + 1.6), layout="constrained")
    sns.heatmap(probabilities, annot=True, fmt=".2f", cmap="mako_r", vmin=0, ax=ax,
                annot_kws={"fontsize": 7}, cbar_kws={"label": "probability"})
    for row, column in enumerate(realised.reindex(probabilities.index)):
        ax.add_patch(plt.Rectangle((column, row), 1, 1, fill=False, edgecolor="C3", linewidth=2))
    ax.set(title=title, xlabel="quintile of the period's return (1: lowest; box: realised)", ylabel="")
    return fig
