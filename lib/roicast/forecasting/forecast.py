"""What a finished run expects for the trading days after its data (notebook 06).

The run's network (and its ensemble members when 05 ran), its fitted clip bounds and scalers
read new prices through the same code as 02 (`preprocess.series_until`), and forecast
`days` trading days after `asof`. Several days ahead use the guide's recursive method
(`multistep.recursive_forecast`): each day's forecast is fed back as if observed. Every model
gets a split-conformal interval from its own validation errors at each step ahead, the method
of 05's calibrated interval.

With `refit`, the network is also trained again on every window of the run's dataset up to
`asof`, as 03 trained it, for 03's best number of epochs (`training.refit`): more recent data for
production, at the price of no held-out score. Its forecasts are `hybrid_refit`, with the original
network's intervals.

The step-1 forecast as of a day inside the test period is, by construction, the number 04
recorded in predictions.parquet for the next day: one computation, two uses.
"""

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from roicast import paths, plots
from roicast.config import RunParams, validate_params
from roicast.data import collect
from roicast.errors import DataError, ParameterError, RoicastWarning
from roicast.evaluation import m6, multistep
from roicast.features import preprocess
from roicast.features.dataset import Dataset
from roicast.features.preprocess import to_roi_pct
from roicast.forecasting import distforecast, forecast_table
from roicast.forecasting.on_windows import OnWindows, can_forecast
from roicast.models import forecaster, hybrid, network_distribution, training
from roicast.runs import artefacts, store

STEP = "06_forecast"  # every file it opens goes through `_artefact`: the contract names it
RECENT_DAYS = 60  # days of actual values shown before the forecast in the fan chart
COLUMNS = ["date", "asset", "step", "model", "method", "forecast_roi_pct", "lower_roi_pct",
           "upper_roi_pct", "known_roi_pct", "implied_return_pct"]


class Members(keras.Model):
    """Several networks side by side, one output each: one graph to trace for all of them."""

    def __init__(self, networks: list[keras.Model]):
        super().__init__(name="members")
        self.networks = networks

    def call(self, windows, training=False):
        return [network(windows, training=training) for network in self.networks]


class Ensemble:
    """The equal-weight mean of several networks, called like one Keras model.

    The networks run as one model (`Members`): one trace for the ensemble rather than one per
    member, which made TensorFlow warn about retracing once five came close together.
    """

    def __init__(self, members: list[keras.Model]):
        self.members = Members(members)
        self.distributional = all(map(training.is_distributional, members))

    def predict_on_batch(self, windows: np.ndarray) -> np.ndarray:
        """The members' mean forecast; of distribution networks, their mixture's mean."""
        if self.distributional:
            return self.predict_distribution_on_batch(windows)[0]
        return np.mean(self.members.predict_on_batch(windows), axis=0)

    def predict_distribution_on_batch(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distribution networks' mixture: location and scale (batch × assets, scaled units)."""
        outputs = np.array(self.members.predict_on_batch(windows))  # members × batch × 2·assets
        half = outputs.shape[-1] // 2
        return network_distribution.mixture(outputs[..., :half], outputs[..., half:])


@dataclass
class TrainedRun:
    """What a forecast needs from a finished run."""

    run_id: str
    params: RunParams
    scalers: dict
    dataset: Dataset
    predictors: dict  # name -> an object with Keras's `predict_on_batch(windows)`
    interval_from: dict = field(default_factory=dict)  # name -> the predictor whose validation
    # errors give its interval, for one with no held-out errors of its own (the refit); else itself


def _artefact(run_dir: Path, name: str) -> Path:
    return store.artefact_path(run_dir, STEP, name)


def run_params(run_id: str) -> RunParams:
    """The parameters a run was made with: the runner's params.json, else what each step recorded.

    A forecast's own parameters (06_forecast's: asof, forecast_days, …) take their defaults: each
    forecast sets them, none is taken from the run or an earlier forecast.
    """
    run_dir = paths.run_dir(run_id)
    saved = _artefact(run_dir, store.PARAMS)
    if saved.exists():
        values = artefacts.read_json(saved)
    else:
        values = {k: v for entry in store.read_lineage(run_dir).values() for k, v in entry["params"].items()}
    own = store.own_parameters(STEP)
    return validate_params({**{k: v for k, v in values.items() if k not in own}, "run_id": run_id})


def load_run(run_id: str, params: RunParams) -> TrainedRun:
    """The network, the ensemble (when 05 ran) and the registered forecasters that forecast ahead
    (the ridge, persistence when the target is an input feature, the run's `model_plugins`)."""
    run_dir = paths.run_dir(run_id)
    dataset = Dataset.load(_artefact(run_dir, store.DATASET))
    scalers = artefacts.read_json(_artefact(run_dir, store.SCALER))
    network = hybrid.load_model(_artefact(run_dir, store.MODEL))
    predictors: dict = {"hybrid": network}
    if params.task_spec.forecasts_target:
        ensemble_ran = _artefact(run_dir, store.ENSEMBLE_INFO).exists()  # current: open_step checked
        members = sorted(_artefact(run_dir, store.ENSEMBLE).glob(store.MEMBERS)) if ensemble_ran else []
        if members:
            predictors["ensemble"] = Ensemble([network, *(hybrid.load_model(m) for m in members)])
        ahead = forecaster.for_dataset(dataset, scalers, params.model_plugins, in_forecast=True)
        predictors.update({name: OnWindows(model, dataset) for name, model in ahead.items()
                           if can_forecast(type(model), dataset)})
    return TrainedRun(run_id, params, scalers, dataset, predictors)


def price_source(params: RunParams) -> dict:
    """Where a forecast's new prices come from: its own source and CSV, else the run's."""
    source = params.forecast_source or params.source
    csv_path = params.forecast_csv_path or params.csv_path
    return {"source": source, "csv_path": csv_path if source == "csv" else None}


def new_prices(params: RunParams, asof: str | None) -> pd.DataFrame:
    """Prices through 01's source and rules (yahoo: the cache topped up; csv: `forecast_csv_path`),
    up to `asof` when given."""
    updates = {**price_source(params), "start": None, "end": asof, "tickers": params.tickers,
               "on_missing": "drop"}
    return collect.collect_prices(params.model_copy(update=updates)).prices


def align_assets(prices: pd.DataFrame, assets: list[str]) -> pd.DataFrame:
    """The trained assets in trained order: a missing one is an error (the input layout is
    fixed), an extra one is ignored with a warning."""
    missing = [a for a in assets if a not in prices.columns]
    if missing:
        raise DataError(f"The new prices lack {', '.join(missing)}, which the network was trained on; "
                        f"its input has one slot per trained asset ({', '.join(assets)}). Supply prices "
                        "for every one of them.")
    extra = [a for a in prices.columns if a not in assets]
    if extra:
        warnings.warn(f"Ignoring {', '.join(extra)}: not among the assets the network was trained on.",
                      RoicastWarning, stacklevel=2)
    return prices[assets]


def cut_at(prices: pd.DataFrame, asof: str | None) -> tuple[pd.DataFrame, pd.Timestamp, list[str]]:
    """Prices up to `asof` (default: the newest day); a day without prices rolls back to the
    trading day before, with a note."""
    notes = []
    if asof is None:
        day = prices.index.max()
    else:
        wanted = pd.Timestamp(asof)
        if wanted < prices.index.min():
            raise ParameterError(f"asof {asof} is before the first price ({prices.index.min():%Y-%m-%d}).")
        day = prices.index[prices.index <= wanted].max()
        if day != wanted:
            notes.append(f"{wanted:%Y-%m-%d} is not a trading day of these prices; the forecast is "
                         f"as of the trading day before, {day:%Y-%m-%d}.")
    return prices.loc[:day], day, notes


def staleness_days(newest: pd.Timestamp, today: pd.Timestamp | None = None) -> int:
    """Business days between the newest price and today."""
    today = pd.Timestamp.today().normalize() if today is None else today
    return max(0, len(pd.bdate_range(newest, today)) - 1)


def future_dates(prices: pd.DataFrame, day: pd.Timestamp, days: int) -> list[pd.Timestamp]:
    """The trading days after `day`: those in the data first, then business days."""
    known = list(prices.index[prices.index > day][:days])
    after = known[-1] if known else day
    return known + list(pd.bdate_range(after + pd.Timedelta(days=1), periods=days - len(known)))


def conformal_half_widths(scaled: np.ndarray, run: TrainedRun, origins: np.ndarray) -> np.ndarray:
    """Per step ahead and asset, the `interval` quantile of a predictor's absolute validation
    errors in ROI %: `scaled` holds its forecasts made the same way (recursively) from the
    validation `origins`, shaped (steps, origins, assets)."""
    dataset = run.dataset
    errors = [np.abs(to_roi_pct(scaled[h], run.scalers)
                     - dataset.replace(horizon=h + dataset.horizon_days).target_rows(origins, "target_pct"))
              for h in range(len(scaled))]
    return np.stack([np.quantile(e, run.params.interval, axis=0) for e in errors])


def forecast_frame(run: TrainedRun, latest: Dataset, days: int, dates: list[pd.Timestamp]) -> pd.DataFrame:
    """The long table of every model's forecast for each step and asset, with its interval.

    `known_roi_pct` is the part of the smoothed target already observed on asof (four of the
    five days of a 5-day mean at step 1), `implied_return_pct` the day's own return the forecast
    implies. With `target: raw` nothing of the target is known and the forecast is that return.
    Each predictor forecasts the validation origins (for its interval) and asof in one batch:
    one graph per network, not one per batch size.
    """
    val_origins = multistep.origins(run.dataset.val_idx, days)
    asof_origin = np.array([len(latest.features)])
    starts = [np.concatenate(parts) for parts in zip(multistep.starting_point(run.dataset, val_origins),
                                                     multistep.starting_point(latest, asof_origin),
                                                     strict=True)]
    scaled = {name: multistep.roll_forward(predictor, latest, run.scalers, *starts, days)
              for name, predictor in run.predictors.items()}
    window = run.params.smooth_window if run.params.target == "smoothed" else 1
    raw = latest.raw_pct
    records = []
    for name in run.predictors:
        roi = to_roi_pct(scaled[name][:, -1], run.scalers)
        half = conformal_half_widths(scaled[run.interval_from.get(name, name)][:, :-1], run, val_origins)
        implied = np.empty_like(roi)
        known_raw = list(raw[len(raw) - (window - 1):]) if window > 1 else []
        for step in range(days):
            recent = np.sum(known_raw[len(known_raw) - (window - 1):], axis=0) if window > 1 else 0
            implied[step] = window * roi[step] - recent
            known_raw.append(implied[step])
        for step in range(days):
            known = np.sum(raw[len(raw) - (window - 1 - step):], axis=0) / window \
                if step < window - 1 else np.zeros(len(run.scalers["assets"]))
            for k, asset in enumerate(run.scalers["assets"]):
                records.append({
                    "date": dates[step], "asset": asset, "step": step + 1, "model": name,
                    "method": "one-step" if step == 0 else "recursive",
                    "forecast_roi_pct": roi[step, k], "lower_roi_pct": roi[step, k] - half[step, k],
                    "upper_roi_pct": roi[step, k] + half[step, k], "known_roi_pct": known[k],
                    "implied_return_pct": implied[step, k]})
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def direction_frame(run: TrainedRun, latest: Dataset, dates: list[pd.Timestamp]) -> pd.DataFrame:
    """For a direction run: each network's probability of an up day tomorrow, per asset."""
    windows = latest.windows(np.array([len(latest.features)]))
    flat = np.asarray(windows).reshape(1, latest.seq_len, -1)
    return pd.concat([pd.DataFrame({"date": dates[0], "asset": run.scalers["assets"], "step": 1,
                                    "model": name, "method": "one-step",
                                    "probability_up": predictor.predict_on_batch(flat)[0]})
                      for name, predictor in run.predictors.items()], ignore_index=True)


def windows_until(dataset: Dataset, day: pd.Timestamp) -> np.ndarray:
    """The training, validation and test windows of dataset.npz whose target date is on or before
    `day`: what a refit as of `day` trains on. Days after the dataset's last are in no window of
    it (the new prices' windows would need 02 re-run), so a refit stops there."""
    indices = np.concatenate([dataset.train_idx, dataset.val_idx, dataset.test_idx])
    target_dates = dataset.target_rows(indices, "dates")
    return indices[target_dates <= np.datetime64(day.date())]


def refit_network(run: TrainedRun, day: pd.Timestamp, work_dir: Path | None) -> tuple[keras.Model, str]:
    """The run's network refitted on its windows up to `day` for 03's best number of epochs, and
    the note that goes with its forecasts."""
    trained = artefacts.read_json(_artefact(paths.run_dir(run.run_id), store.TRAIN_INFO))
    indices = windows_until(run.dataset, day)
    if len(indices) == 0:
        raise ParameterError(f"refit: no window of the run's dataset has its target on or before "
                             f"{day:%Y-%m-%d}; choose a later asof.")
    epochs = int(trained["best_epoch"])
    with tempfile.TemporaryDirectory() as scratch:
        result = training.refit(run.dataset, run.params, indices, epochs, Path(work_dir or scratch),
                                trained.get("learning_rates"))
    last = pd.Timestamp(run.dataset.dates[-1])
    note = (f"hybrid_refit: refitted on every window up to asof for {epochs} epochs; it has no test "
            f"score of its own. Its {len(indices)} windows are the run's training, validation and "
            f"test windows with a target on or before {min(day, last):%Y-%m-%d} (the run's dataset "
            f"ends {last:%Y-%m-%d}; newer days are in none). Its intervals are the original "
            "network's validation half-widths: the refit has no held-out errors.")
    return result.model, note


@dataclass
class Forecast:
    frame: pd.DataFrame  # the long table saved as forecasts/<asof>.parquet
    info: dict  # forecast.json
    recent: pd.DataFrame  # the smoothed ROI % of the last days before asof (dates × assets)
    refitted: keras.Model | None = None  # with `refit`, the network saved as forecasts/<asof>-refit.keras
    distribution: distforecast.Result | None = None  # <asof>_distribution.csv and <asof>_m6.csv


def make_forecast(run_id: str, params: RunParams, prices: pd.DataFrame | None = None,
                  asof: str | None = None, days: int | None = None,
                  work_dir: Path | None = None) -> Forecast:
    """The forecast of a finished run for `days` trading days after `asof`, and its summary.

    With `params.refit`, the network refitted on the windows up to asof forecasts too, as
    `hybrid_refit`; `work_dir` holds its training files (default: a temporary folder).
    """
    days = params.forecast_days if days is None else days
    asof = params.asof if asof is None else asof
    notes = []
    if params.target == "sum" and days > 1:
        notes.append(f"target='sum' forecasts the next {params.horizon_days} trading days at once: one "
                     f"step, not forecast_days={days}.")
        days = 1
    run = load_run(run_id, params)
    origin = price_source(params) if prices is None else {"source": "given", "csv_path": None}
    prices = new_prices(params, None) if prices is None else prices
    prices = align_assets(prices, run.scalers["assets"])
    history, day, cut_notes = cut_at(prices, asof)
    notes += cut_notes
    dates = future_dates(prices, day, days)
    stale = staleness_days(day)
    if stale > params.max_staleness_days:
        message = (f"The newest price used is {day:%Y-%m-%d}, {stale} business days ago (more than "
                   f"max_staleness_days={params.max_staleness_days}): this forecast is for days long past.")
        warnings.warn(message, RoicastWarning, stacklevel=2)
        notes.append(message)
    refitted = None
    if params.refit:
        refitted, note = refit_network(run, day, work_dir)
        run.predictors = {"hybrid_refit": refitted, **run.predictors}
        run.interval_from["hybrid_refit"] = "hybrid"
        notes.append(note)
    latest = preprocess.series_until(history, params, run.scalers)
    network = distforecast.network_of(run.predictors, run.dataset, latest, run.scalers, params.distributional)
    month = distforecast.make(run.dataset, latest, params.horizon_days, days, network)
    notes.append(f"distribution, quintile probabilities and the M6 file: {month.info['note']}.")
    if params.task_spec.classifies:
        frame = direction_frame(run, latest, dates)
    else:
        frame = forecast_frame(run, latest, days, dates)
    recent = pd.DataFrame(latest.target_pct[-RECENT_DAYS:], columns=run.scalers["assets"],
                          index=pd.to_datetime(latest.dates[-RECENT_DAYS:]))
    info = {"asof": f"{day:%Y-%m-%d}", "requested_asof": asof,
            "newest_price": f"{prices.index.max():%Y-%m-%d}",
            "staleness_business_days": stale, "stale": stale > params.max_staleness_days,
            "days": days, "models": sorted(frame["model"].unique()), "interval": params.interval,
            "method": "step 1 one-step, later steps recursive (each forecast fed back as input)",
            "task": params.task, "refit": params.refit, "notes": notes,
            "params": {name: getattr(params, name) for name in store.own_parameters(STEP)},
            "prices": origin, "distribution": month.info}
    return Forecast(frame, info, recent, refitted, month)


def plot_fan(result: Forecast, params: RunParams):
    """The fan chart of the headline model's forecast (None for the direction task, whose
    probabilities have no interval to draw)."""
    if not params.task_spec.forecasts_target:
        return None
    model = forecast_table.headline_model(result.frame)
    return plots.plot_forecast_fan(result.recent, result.frame, model)


def save(run_dir: Path, result: Forecast, figure=None) -> Path:
    """forecasts/<asof>.parquet and .csv (and the fan chart as .png, the refitted network as
    <asof>-refit.keras, never over model.keras), its summary and parameters as <asof>.json, the
    distribution per asset and horizon as <asof>_distribution.csv, the M6 file as <asof>_m6.csv,
    and forecast.json (06's section of metrics.json)."""
    folder = _artefact(run_dir, store.FORECASTS)
    path = artefacts.write_parquet(folder / f"{result.info['asof']}.parquet", result.frame)
    artefacts.write_json(folder / f"{result.info['asof']}.json", result.info)
    if result.refitted is not None:
        with artefacts.atomic_path(folder / f"{result.info['asof']}-refit.keras") as tmp:
            result.refitted.save(tmp)
    with artefacts.atomic_path(folder / f"{result.info['asof']}.csv") as tmp:
        result.frame.to_csv(tmp, index=False)
    if figure is not None:
        with artefacts.atomic_path(folder / f"{result.info['asof']}.png") as tmp:
            figure.savefig(tmp, dpi=80, bbox_inches="tight", format="png")
    if result.distribution is not None:
        with artefacts.atomic_path(folder / f"{result.info['asof']}_distribution.csv") as tmp:
            result.distribution.table.to_csv(tmp, index=False)
        m6.write_submission(result.distribution.m6, folder / f"{result.info['asof']}_m6.csv")
    artefacts.write_json(_artefact(run_dir, store.FORECAST_INFO), {"forecast": result.info})
    return path


def forecast(run_id: str, prices: pd.DataFrame | None = None, asof: str | None = None,
             days: int = 5) -> pd.DataFrame:
    """The Python API: the same frame as forecasts/<asof>.parquet, without writing anything."""
    params = run_params(run_id)
    store.check_inputs(paths.run_dir(run_id), STEP)
    return make_forecast(run_id, params, prices, asof, days).frame
