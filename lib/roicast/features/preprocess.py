"""Turn prices into the model's scaled daily series, following the guide with its errors fixed.

The guide's steps are kept in order (returns, outliers, log, smoothing, scaling), with
two fixes (docs/architecture.md, "Known errors"): returns are log returns in percent,
`100 * log1p(pct_change)`, which are defined for every loss (the guide's `log1p` of a
percent return is NaN below -1 %); and nothing is filled backwards or fitted on rows
after the training period. Rolling means are causal, so they never look ahead.
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from roicast.config import RunParams
from roicast.errors import DataError, RoicastWarning
from roicast.features.dataset import PERIODS, Dataset
from roicast.features.windows import rows_needed, sample_indices, split_indices
from roicast.runs import store
from roicast.runs.artefacts import write_json

Scaler = MinMaxScaler | StandardScaler


def log_returns_pct(prices: pd.DataFrame) -> pd.DataFrame:
    """Daily log returns in percent; the first row (no previous price) is dropped."""
    returns = 100 * np.log1p(prices.pct_change(fill_method=None))
    return returns.replace([np.inf, -np.inf], np.nan).iloc[1:]


def clean_returns(returns: pd.DataFrame) -> pd.DataFrame:
    """Drop empty assets, trim rows before every asset has started, fill interior holes with 0.

    A hole left after collect's forward fill means no price that day; a zero return is what
    a carried-forward price would give, and it uses no later value.
    """
    empty = returns.columns[returns.isna().all()]
    if len(empty):
        warnings.warn(f"Dropping assets with no usable returns: {', '.join(empty)}.",
                      RoicastWarning, stacklevel=2)
        returns = returns.drop(columns=empty)
    if returns.shape[1] == 0:
        raise DataError("No asset has any usable returns. Check the prices from 01_collect.")
    first_full = returns.notna().all(axis=1).idxmax() if returns.notna().all(axis=1).any() else None
    if first_full is None:
        raise DataError("No date has returns for every asset. Drop assets that never overlap.")
    if first_full != returns.index[0]:
        late = [a for a in returns.columns if returns[a].first_valid_index() == first_full]
        warnings.warn(f"Starting at {first_full:%Y-%m-%d}, when {', '.join(late)} begin(s); "
                      f"{returns.index.get_loc(first_full)} earlier rows dropped.",
                      RoicastWarning, stacklevel=2)
        returns = returns.loc[first_full:]
    holes = int(returns.isna().sum().sum())
    if holes:
        warnings.warn(f"{holes} missing daily returns set to 0 (no price that day).",
                      RoicastWarning, stacklevel=2)
    return returns.fillna(0.0)


def fit_clip_bounds(train_returns: pd.DataFrame, quantile: float) -> tuple[pd.Series, pd.Series]:
    """Per-asset lower and upper quantiles of the training returns."""
    return train_returns.quantile(quantile), train_returns.quantile(1 - quantile)


def smooth(returns: pd.DataFrame, window: int) -> pd.DataFrame:
    """Causal rolling mean over `window` days (the guide's 5); 1 leaves returns unchanged."""
    return returns.rolling(window).mean()


def fit_scaler(kind: str, train_values: np.ndarray) -> Scaler:
    """Fit the guide's MinMax (0..1) or a standard scaler on training rows only."""
    scaler = MinMaxScaler(feature_range=(0, 1)) if kind == "minmax" else StandardScaler()
    return scaler.fit(train_values)


_SCALER_STATE = {
    "minmax": ("feature_range", "data_min_", "data_max_", "data_range_", "scale_", "min_"),
    "standard": ("mean_", "var_", "scale_"),
}


def fit_scalers(kind: str, scale_by: str, series: dict[str, pd.DataFrame],
                rows: slice) -> dict[str, Scaler]:
    """One scaler per series (`feature`), or one per asset shared by both series (`asset`).

    With one affine map for an asset's raw and smoothed returns, the scaled smoothed value is
    still the mean of the scaled raw values, so "tomorrow's 5-day mean = (four known returns +
    tomorrow's) / 5" holds in the scaled space too; fitted on the raw returns of training rows.
    """
    if scale_by == "asset":
        shared = fit_scaler(kind, series["raw"].to_numpy()[rows])
        scalers = {name: shared for name in series if name != "sum"}
    else:
        scalers = {name: fit_scaler(kind, frame.to_numpy()[rows]) for name, frame in series.items()
                   if name != "sum"}
    if "sum" in series:  # no sum of scaled days equals the scaled sum: it gets its own scaler
        scalers["sum"] = fit_scaler(kind, series["sum"].to_numpy()[rows])
    return scalers


def scaler_to_dict(scaler: Scaler) -> dict:
    """The fitted state of a scikit-learn scaler as plain JSON values (no pickle)."""
    kind = "minmax" if isinstance(scaler, MinMaxScaler) else "standard"
    state = {name: np.asarray(getattr(scaler, name)).tolist() for name in _SCALER_STATE[kind]}
    return {"kind": kind, **state}


def scaler_from_dict(state: dict) -> Scaler:
    """Rebuild a fitted scaler from `scaler_to_dict`'s output."""
    kind = state["kind"]
    if kind == "minmax":
        scaler = MinMaxScaler(feature_range=tuple(state["feature_range"]))
    else:
        scaler = StandardScaler()
    for name in _SCALER_STATE[kind]:
        if name != "feature_range":
            setattr(scaler, name, np.asarray(state[name], dtype=float))
    scaler.n_features_in_ = len(state["scale_"])
    return scaler


def to_roi_pct(scaled_target: np.ndarray, scalers: dict) -> np.ndarray:
    """Invert the target's scaling: scaled values → the target's daily log return in percent
    (smoothed, or tomorrow's own for a raw target)."""
    scaler = scaler_from_dict(scalers["target"])
    values = np.asarray(scaled_target, dtype=float)
    return scaler.inverse_transform(values.reshape(-1, values.shape[-1])).reshape(values.shape)


def smoothed_and_raw(returns: pd.DataFrame, smooth_window: int,
                     clip: tuple[pd.Series, pd.Series] | None,
                     sum_days: int | None = None) -> dict[str, pd.DataFrame]:
    """The daily series of a window: clipped returns' causal rolling mean, and the returns; with
    `sum_days`, also 'sum', the unclipped returns' trailing sum over that many days (the
    month-ahead target, which scores what a holder earns).

    All start at the first row with a full rolling mean, so row k of each is the same day (the
    sum's first `sum_days - smooth_window` rows are NaN: no sample's target lies there).
    """
    sums = {} if sum_days is None else {"sum": returns.rolling(sum_days).sum().iloc[smooth_window - 1:]}
    if clip is not None:
        returns = returns.clip(lower=clip[0], upper=clip[1], axis=1)
    return {"smoothed": smooth(returns, smooth_window).iloc[smooth_window - 1:],
            "raw": returns.iloc[smooth_window - 1:], **sums}


def target_horizon(params: RunParams) -> int:
    """Rows from a window's last day to its target's: `horizon`, plus the days after the first
    that a 'sum' target adds (its row is the last of its `horizon_days`)."""
    return params.horizon + (params.horizon_days - 1 if params.target == "sum" else 0)


def sum_days(params: RunParams) -> int | None:
    """The days a 'sum' target sums over; None for the other targets (no such series built)."""
    return params.horizon_days if params.target == "sum" else None


def scale_series(series: dict[str, pd.DataFrame], scalers: dict[str, Scaler],
                 input_features: list[str], target: str = "smoothed") -> tuple[np.ndarray, np.ndarray]:
    """(features of shape (days, assets, features), scaled target), with already fitted scalers.

    The target is the series named `target` ('smoothed' or 'raw'), scaled like that feature.
    """
    features = np.stack([scalers[name].transform(series[name].to_numpy())
                         for name in input_features], axis=-1).astype(np.float32)
    target_values = features[..., input_features.index(target)] if target in input_features else \
        scalers[target].transform(series[target].to_numpy()).astype(np.float32)
    return features, target_values


def _daily(series: dict[str, pd.DataFrame], returns: pd.DataFrame, scalers: dict, params: RunParams,
           split: dict[str, np.ndarray] | None = None) -> Dataset:
    """The scaled daily series as a Dataset; without `split`, one with no samples in any period."""
    features, target = scale_series(series, scalers, params.input_features, params.target)
    smoothed = series["smoothed"]
    periods = {} if split is None else {f"{name}_idx": split[name] for name in ("train", "val", "test")}
    return Dataset(
        features=features, target=target, target_pct=series[params.target].to_numpy(),
        raw_pct=series["raw"].to_numpy(), returns_pct=returns.iloc[params.smooth_window - 1:].to_numpy(),
        dates=smoothed.index.to_numpy().astype("datetime64[D]"),
        assets=np.array(smoothed.columns, dtype=str),
        feature_names=np.array(params.input_features, dtype=str), seq_len=params.seq_len,
        horizon=target_horizon(params), smooth_window=params.smooth_window, scale_by=params.scale_by,
        target_of=params.target, horizon_days=sum_days(params) or 1, **periods)


def series_until(prices: pd.DataFrame, params: RunParams, scaler_json: dict) -> Dataset:
    """The daily series of 02_preprocess up to the prices' last day, with the run's fitted clip
    bounds and scalers (never refitted): what a forecast after that day starts from.

    No sample is in any period; sample index `len(features)` is the window that ends on the
    last day.
    """
    returns = clean_returns(log_returns_pct(prices))
    clip = scaler_json.get("clip")
    if clip is None and params.clip_quantile is not None:
        raise DataError("This run's scaler.json has no clip bounds; re-run 02_preprocess.")
    bounds = None if clip is None else (pd.Series(clip["low"], index=returns.columns),
                                        pd.Series(clip["high"], index=returns.columns))
    series = smoothed_and_raw(returns, params.smooth_window, bounds, sum_days(params))
    if len(series["raw"]) < params.seq_len:
        raise DataError(f"Too little history for a forecast: {len(series['raw'])} days of returns "
                        f"after smoothing, and the network reads windows of {params.seq_len} days.")
    scalers = {params.target: scaler_from_dict(scaler_json["target"]),
               **{name: scaler_from_dict(state) for name, state in scaler_json["features"].items()}}
    return _daily(series, returns, scalers, params)


def build_dataset(prices: pd.DataFrame, params: RunParams,
                  split: dict[str, np.ndarray] | None = None) -> tuple[Dataset, dict, dict]:
    """Prices → (the Dataset of dataset.npz, scalers for scaler.json, summary for preprocess.json).

    Fitted statistics (clip bounds, scalers) see only rows up to the last training target.
    `split` replaces the chronological split of the parameters (walk-forward folds).
    """
    returns = clean_returns(log_returns_pct(prices))
    horizon = target_horizon(params)
    gap = max(params.smooth_window, horizon)
    needed = rows_needed(params.seq_len, horizon, gap, params.smooth_window)
    if len(returns) < needed:
        raise DataError(
            f"Too little history: {len(returns)} rows (trading days) of returns, but "
            f"seq_len={params.seq_len}, horizon={params.horizon}, target={params.target} and "
            f"smooth_window={params.smooth_window} need at least {needed} (and far more to "
            "learn anything). Use more dates or a shorter seq_len.")
    n_rows = len(returns) - (params.smooth_window - 1)
    samples = sample_indices(n_rows, params.seq_len, horizon)
    if split is None:
        split = split_indices(samples, params.test_fraction, params.val_fraction, gap)
    last_train_row = int(split["train"][-1]) + horizon - 1 + (params.smooth_window - 1)

    clip = None
    if params.clip_quantile is not None:
        clip = fit_clip_bounds(returns.iloc[:last_train_row + 1], params.clip_quantile)
    series = smoothed_and_raw(returns, params.smooth_window, clip, sum_days(params))
    smoothed = series["smoothed"]
    train_rows = slice(0, int(split["train"][-1]) + horizon)
    scalers = fit_scalers(params.scaler, params.scale_by, series, train_rows)
    dataset = _daily(series, returns, scalers, params, split)
    scaler_json = {"assets": list(smoothed.columns), "target": scaler_to_dict(scalers[params.target]),
                   "features": {name: scaler_to_dict(scalers[name]) for name in params.input_features},
                   "clip": None if clip is None else {"low": clip[0].tolist(), "high": clip[1].tolist()}}
    info = summarise(dataset, params, gap)
    return dataset, scaler_json, info


def period_dates(dataset: Dataset, period: str) -> tuple[str, str]:
    """First and last target date of a period."""
    dates = dataset.target_rows(dataset.indices(period), "dates")
    return str(dates[0]), str(dates[-1])


def summarise(dataset: Dataset, params: RunParams, gap: int) -> dict:
    """The content of preprocess.json: parameters, shapes and each period's dates."""
    periods = {p: {"n": len(dataset.indices(p)), "start": period_dates(dataset, p)[0],
                   "end": period_dates(dataset, p)[1]} for p in PERIODS}
    return {
        "params": {name: getattr(params, name) for name in (
            "smooth_window", "clip_quantile", "scaler", "scale_by", "seq_len", "horizon",
            "test_fraction", "val_fraction", "input_features", "target", "horizon_days")},
        "gap": gap,
        "assets": dataset.assets.tolist(),
        "n_rows": int(dataset.features.shape[0]),
        "window_shape": [params.seq_len, *dataset.features.shape[1:]],
        "periods": periods,
    }


def direction_labels(dataset: Dataset, indices: np.ndarray, direction_of: str) -> np.ndarray:
    """1 where the next day goes up: the raw return's sign, or the smoothed series' change."""
    if direction_of == "return":
        return (dataset.target_rows(indices, "returns_pct") > 0).astype(np.float32)
    today = dataset.target_pct[np.asarray(indices) - 1]
    return (dataset.target_rows(indices, "target_pct") > today).astype(np.float32)


def write_outputs(run_dir: Path, dataset: Dataset, scalers: dict, info: dict) -> None:
    """Write dataset.npz, scaler.json and preprocess.json into the run folder."""
    dataset.save(store.artefact_path(run_dir, "02_preprocess", store.DATASET))
    write_json(store.artefact_path(run_dir, "02_preprocess", store.SCALER), scalers)
    write_json(store.artefact_path(run_dir, "02_preprocess", store.PREPROCESS_INFO), info)


def guide_log1p_nan_share(prices: pd.DataFrame) -> float:
    """Share of daily values the guide's `log1p(percent return)` turns into NaN (every loss < -1 %)."""
    with np.errstate(invalid="ignore"):
        guide = np.log1p(prices.pct_change(fill_method=None).iloc[1:] * 100)
    return float(np.isnan(guide.to_numpy()).mean())


def transform_stages(prices: pd.DataFrame, dataset: Dataset) -> dict[str, np.ndarray]:
    """The daily values after each step, for the distribution plots (a raw target is the log
    return itself, so it has no smoothed stage)."""
    stages = {"percent return (guide)": 100 * prices.pct_change(fill_method=None).to_numpy()[1:],
              "log return %": dataset.raw_pct}
    if dataset.target_of == "smoothed":
        stages["smoothed log return %"] = dataset.target_pct
    return {**stages, "scaled target": dataset.target}
