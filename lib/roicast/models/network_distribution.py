"""The network's forecast distribution: from its location and scale per asset to a joint Gaussian.

A network trained with `output='distribution'` gives each asset a location and a scale of its
target, in the target's scaled units. Four steps make that a `distribution.Forecast`:

- the members of an ensemble are mixed (`mixture`: the mixture's mean and variance, by the law
  of total variance), so their disagreement widens the forecast;
- the assets' correlation comes from the training residuals standardised by the forecast scale,
  shrunk by scikit-learn's Ledoit–Wolf estimator (`residual_correlation`): the network forecasts
  each asset's margin, not their dependence;
- the target's scaler is inverted (`to_forecast`), so a 'sum' target (`target='sum'`,
  `horizon_days` H) gives the H-day log return the M6 scores use;
- the forecast is calibrated on the validation windows (`Calibration`, in log-return units):
  the location's spread across assets shrunk by what held-out returns bear out, and the scale
  mapped by a factor and a power. The network partly fits its training windows, so the scale it
  learns there is too small out of sample, and too spread: on 2018–2022 one factor alone left its
  90 % intervals covering 83 % of months where it forecast calm and 93 % where it forecast
  turmoil. The calibration may take a second scale, an anchor: the trailing 250-day one
  (`trailing_scale`) carries the long history that the 60-day window lacks.

`YearlyNetwork` is a forecaster for `roicast.evaluation.m6.evaluate`: it retrains the network(s) once per
calendar year on the `train_years` before it, from the returns the evaluation hands it, and
calibrates each month's forecast, anchored, on its own track record once it has one.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar
from sklearn.covariance import LedoitWolf

from roicast.config import RunParams
from roicast.errors import DataError, ParameterError
from roicast.features import preprocess
from roicast.features.dataset import Dataset
from roicast.features.windows import sample_indices, year_splits
from roicast.models import training
from roicast.models.distribution import Forecast
from roicast.runs.artefacts import atomic_path


def mixture(locations: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of an equal-weight mixture of Gaussians (members on axis 0):
    the mean of the members' means, and the mean of their variances plus the variance of their
    means."""
    locations, scales = np.asarray(locations, float), np.asarray(scales, float)
    mean = locations.mean(axis=0)
    variance = (scales**2).mean(axis=0) + locations.var(axis=0)
    return mean, np.sqrt(variance)


def residual_correlation(actual: np.ndarray, location: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The assets' correlation (assets × assets) of standardised residuals (samples × assets), by
    Ledoit–Wolf shrinkage of their covariance, rescaled to a unit diagonal."""
    residuals = (np.asarray(actual, float) - location) / scale
    covariance = LedoitWolf().fit(residuals).covariance_
    sd = np.sqrt(np.diag(covariance))
    return covariance / np.outer(sd, sd)


@dataclass(frozen=True)
class Calibration:
    """A correction of the network's forecasts (log-return units), fitted on held-out windows.

    `shrink` is the share of each location's deviation from the cross-sectional mean that is
    kept (the least-squares slope of held-out returns on it, within [0, 1]: a network without
    skill at the mean keeps none). The scale becomes `factor · reference · (scale / reference)^power`,
    `reference` the held-out scales' geometric mean: `power` below 1 pulls calm and volatile
    forecasts together, `factor` sets the overall width; both maximise the held-out Gaussian
    likelihood. Fitted with an `anchor` (a second scale per sample, such as the trailing 250-day
    one, `trailing_scale`), the scale is also multiplied by `(anchor / anchor_reference)^anchor_power`,
    both powers by the same likelihood: the network's 60-day window is blind to the longer history
    that ranks the assets' volatility best. The identity (all 1, no anchor) leaves a forecast as it is.
    """

    shrink: float = 1.0
    factor: float = 1.0
    power: float = 1.0
    reference: float = 1.0
    anchor_power: float = 0.0
    anchor_reference: float = 1.0

    POWERS = (0.0, 2.0)  # the search's bounds: from one scale for all to twice the spread

    @staticmethod
    def _shrink(actual: np.ndarray, location: np.ndarray) -> float:
        deviation = location - location.mean(axis=1, keepdims=True)
        outcome = actual - actual.mean(axis=1, keepdims=True)
        spread = float(np.sum(deviation**2))
        return float(np.clip(np.sum(deviation * outcome) / spread, 0.0, 1.0)) if spread > 0 else 0.0

    @classmethod
    def fit(cls, actual: np.ndarray, location: np.ndarray, scale: np.ndarray,
            anchor: np.ndarray | None = None) -> "Calibration":
        """The calibration of held-out samples (samples × assets, log units; never the test's)."""
        actual, location, scale = (np.asarray(a, float) for a in (actual, location, scale))
        shrink = cls._shrink(actual, location)
        residual = actual - cls(shrink=shrink).location(location)
        reference = float(np.exp(np.mean(np.log(scale))))
        relative = np.log(scale / reference)
        if anchor is not None:
            return cls._fit_anchored(shrink, residual, reference, relative, np.asarray(anchor, float))

        def factor_at(power: float) -> float:
            return float(np.sqrt(np.mean((residual / reference) ** 2 / np.exp(2 * power * relative))))

        def negative_log_likelihood(power: float) -> float:
            return float(np.mean(power * relative) + np.log(factor_at(power)))

        if np.ptp(relative) == 0:  # one scale for every sample: no spread to correct
            return cls(shrink, factor_at(1.0), 1.0, reference)
        power = float(minimize_scalar(negative_log_likelihood, bounds=cls.POWERS, method="bounded").x)
        return cls(shrink, factor_at(power), power, reference)

    @classmethod
    def _fit_anchored(cls, shrink: float, residual: np.ndarray, reference: float, relative: np.ndarray,
                      anchor: np.ndarray) -> "Calibration":
        if not np.all(np.isfinite(anchor) & (anchor > 0)):
            raise DataError("the anchor scale is missing or not positive for some held-out samples: "
                            "give it more history before them")
        anchor_reference = float(np.exp(np.mean(np.log(anchor))))
        covariates = relative, np.log(anchor / anchor_reference)

        def factor_at(powers: np.ndarray) -> float:
            exponent = 2 * (powers[0] * covariates[0] + powers[1] * covariates[1])
            return float(np.sqrt(np.mean((residual / reference) ** 2 / np.exp(exponent))))

        def negative_log_likelihood(powers: np.ndarray) -> float:
            return float(np.mean(powers[0] * covariates[0] + powers[1] * covariates[1])
                         + np.log(factor_at(powers)))

        powers = minimize(negative_log_likelihood, np.array([1.0, 0.0]), bounds=[cls.POWERS] * 2,
                          method="L-BFGS-B").x
        return cls(shrink, factor_at(powers), float(powers[0]), reference, float(powers[1]), anchor_reference)

    def location(self, location: np.ndarray) -> np.ndarray:
        centre = np.mean(location, axis=-1, keepdims=True)
        return centre + self.shrink * (location - centre)

    def scale(self, scale: np.ndarray, anchor: np.ndarray | None = None) -> np.ndarray:
        calibrated = self.factor * self.reference * (np.asarray(scale, float) / self.reference) ** self.power
        if self.anchor_power == 0:
            return calibrated
        if anchor is None:
            raise ParameterError("this calibration was fitted with an anchor scale: pass the forecast's")
        return calibrated * (np.asarray(anchor, float) / self.anchor_reference) ** self.anchor_power


ANCHOR_DAYS = 250


def trailing_scale(returns: pd.DataFrame, horizon_days: int, days: int = ANCHOR_DAYS) -> pd.DataFrame:
    """Each day's scale of the H-day log return from the daily log returns' standard deviation
    over the `days` up to and including it (the covariance baseline's, per asset): a calibration's
    anchor."""
    return returns.rolling(days).std() * np.sqrt(horizon_days)


def in_log_units(location: np.ndarray, scale: np.ndarray, scalers: dict) -> tuple[np.ndarray, np.ndarray]:
    """Location and scale (… × assets) from the target's scaled units to log-return units; the
    target's scaler is affine per asset, so a scale maps by its slope."""
    n_assets = np.shape(location)[-1]
    intercept = preprocess.to_roi_pct(np.zeros((1, n_assets)), scalers)[0]
    slope = preprocess.to_roi_pct(np.ones((1, n_assets)), scalers)[0] - intercept
    location, scale = np.asarray(location, float), np.asarray(scale, float)
    return (intercept + slope * location) / 100, np.abs(slope) * scale / 100


def to_forecast(assets: list[str], location: np.ndarray, scale: np.ndarray, correlation: np.ndarray,
                scalers: dict, calibration: Calibration = Calibration()) -> Forecast:
    """A calibrated `Forecast` of the target in log-return units (not percent) from one window's
    location and scale in scaled units."""
    mean, sd = in_log_units(location, scale, scalers)
    sd = calibration.scale(sd)
    return Forecast(list(assets), calibration.location(mean), correlation * np.outer(sd, sd))


def calibration_on(actual: np.ndarray, location: np.ndarray, scale: np.ndarray,
                   scalers: dict) -> Calibration:
    """`Calibration.fit` on held-out samples given in scaled units (the target rows, the
    network's location and scale)."""
    blank = np.zeros_like(np.asarray(actual, float))
    return Calibration.fit(in_log_units(actual, blank, scalers)[0], *in_log_units(location, scale, scalers))


def prices_of(returns: pd.DataFrame) -> pd.DataFrame:
    """A price table (starting at 1) whose daily log returns are `returns` (dates × assets)."""
    first = returns.index[0] - pd.Timedelta(days=1)
    levels = np.exp(np.vstack([np.zeros((1, returns.shape[1])), np.cumsum(returns.to_numpy(), axis=0)]))
    return pd.DataFrame(levels, index=returns.index.insert(0, first), columns=returns.columns)


@dataclass(frozen=True)
class YearOutputs:
    """One yearly training's members on the windows it saw, in log-return units: the training
    windows (for the residual correlation) and the held-out ones (for the calibration), each
    as the day its window ends (`*_asof`), the realised targets (samples × assets) and every
    member's location and scale (members × samples × assets). Kept, so that a forecast can be
    calibrated again without training."""

    train_asof: np.ndarray
    train_actual: np.ndarray
    train_location: np.ndarray
    train_scale: np.ndarray
    val_asof: np.ndarray
    val_actual: np.ndarray
    val_location: np.ndarray
    val_scale: np.ndarray

    def correlation(self, chosen: slice) -> np.ndarray:
        """The residual correlation of the chosen members' mixture on the training windows."""
        return residual_correlation(self.train_actual, *mixture(self.train_location[chosen],
                                                                self.train_scale[chosen]))

    def calibration(self, chosen: slice, anchor: pd.DataFrame | None = None) -> Calibration:
        """The chosen members' mixture calibrated on the held-out windows; with `anchor` (a
        `trailing_scale` table), anchored by its value on each window's last day."""
        anchors = None if anchor is None else anchor.loc[pd.DatetimeIndex(self.val_asof)].to_numpy()
        return Calibration.fit(self.val_actual, *mixture(self.val_location[chosen], self.val_scale[chosen]),
                               anchors)


def view_forecast(assets: list[str], location: np.ndarray, scale: np.ndarray, correlation: np.ndarray,
                  calibration: Calibration, anchor: np.ndarray | None = None) -> Forecast:
    """A calibrated `Forecast` from the members' locations and scales (members × assets, log units)."""
    mean, sd = mixture(location, scale)
    sd = calibration.scale(sd, anchor)
    return Forecast(list(assets), calibration.location(mean), correlation * np.outer(sd, sd))


class YearlyNetwork:
    """The distribution network as an m6 forecaster, retrained for each calendar year.

    Called with the daily log returns up to a period's eve (`asof`), it trains, on the first call
    in a new year, `members` networks (seeds seed, seed + 1, …) on the windows whose H-day target
    ends in the `train_years` calendar years before it (early-stopped on their last
    `val_fraction`), never on a day of that year. Every call then forecasts from the window that
    ends on `asof` and returns the members' mixture. `forecasts[view][asof]` keeps the
    forecasts of two views, each with the correlation of its own training residuals: the
    'mixture' (returned) and the 'first member' alone, so that both can be scored from one run
    (`m6.score_forecasts`). `years` and `outputs` keep what they were made from (`YearOutputs`,
    and each period's member locations and scales in log units): `save_outputs` writes them.

    Each forecast is calibrated (`Calibration`) with the trailing `anchor_days` scale as its
    anchor (None: without), on its own track record once `track_record` earlier periods have
    ended (their raw forecasts and realised returns, whichever networks made them), and before
    that on the year's held-out windows, which early stopping chose its weights on and so flatter
    it. `calibrations[view][asof]` keeps the one each forecast used. Both were chosen on
    1995–2008 among pre-registered variants (`benchmarks/m6_variants.py`).
    """

    VIEWS = {"mixture": slice(None), "first member": slice(0, 1)}
    TRACK_RECORD = 24  # periods: two years of months, 480 outcomes of 20 assets

    def __init__(self, params: RunParams, train_years: int = 5, members: int = 1, verbose: int = 0,
                 anchor_days: int | None = ANCHOR_DAYS, track_record: int | None = TRACK_RECORD):
        if not params.distributional or params.target != "sum":
            raise ParameterError("YearlyNetwork needs output='distribution' and target='sum' (the "
                                 "H-day log return it forecasts)")
        self.params, self.train_years, self.members, self.verbose = params, train_years, members, verbose
        self.anchor_days, self.track_record = anchor_days, track_record
        self.year: int | None = None
        self.forecasts: dict[str, dict[pd.Timestamp, Forecast]] = {view: {} for view in self.VIEWS}
        self.calibrations: dict[str, dict[pd.Timestamp, Calibration]] = {view: {} for view in self.VIEWS}
        self.years: dict[int, YearOutputs] = {}
        self.outputs: dict[pd.Timestamp, tuple[np.ndarray, np.ndarray]] = {}
        self.fits: list[dict] = []
        self.networks = training.CompiledNetworks()  # one traced graph for every member and year

    def _history(self, returns: pd.DataFrame, year: int) -> pd.DataFrame:
        """The returns from a year before the training years (room for the first windows) on."""
        return returns.loc[f"{year - self.train_years - 1}-01-01":]

    def _fit(self, returns: pd.DataFrame, year: int) -> None:
        params = self.params
        prices = prices_of(self._history(returns, year))
        probe, _, _ = preprocess.build_dataset(prices, params)  # only for the samples' target dates
        samples = sample_indices(len(probe.features), probe.seq_len, probe.horizon)
        split = year_splits(samples, probe.target_rows(samples, "dates"), [year], params.val_fraction,
                            max(params.smooth_window, probe.horizon), self.train_years)[0]
        dataset, self.scalers, _ = preprocess.build_dataset(prices, params, split=split)
        self.assets = [str(a) for a in dataset.assets]
        self.weights, on_train, on_val = [], [], []
        with tempfile.TemporaryDirectory() as work:
            for k in range(self.members):
                network = training.Network(params, Path(work) / f"member_{k}", params.seed + k,
                                           self.verbose, self.networks)
                network.fit(dataset, dataset.train_idx)
                self.model = network.result.model
                self.weights.append(self.model.get_weights())
                on_train.append(in_log_units(*network.predict_distribution(dataset, dataset.train_idx),
                                             self.scalers))
                on_val.append(in_log_units(*network.predict_distribution(dataset, dataset.val_idx),
                                           self.scalers))
                info = network.result.info
                self.fits.append({"year": year, "member": k, "epochs_run": info["epochs_run"],
                                  "best_val_loss": info["best_val_loss"], "fit_seconds": info["fit_seconds"]})

        def seen(indices: np.ndarray, members: list) -> tuple:
            actual = in_log_units(dataset.target_rows(indices), np.zeros(1), self.scalers)[0]
            return dataset.dates[indices - 1], actual, *map(np.array, zip(*members, strict=True))

        outputs = YearOutputs(*seen(dataset.train_idx, on_train), *seen(dataset.val_idx, on_val))
        self.years[year] = outputs
        anchor = self._anchors(returns)
        self.correlations = {view: outputs.correlation(chosen) for view, chosen in self.VIEWS.items()}
        self.calibration = {view: outputs.calibration(chosen, anchor) for view, chosen in self.VIEWS.items()}
        self.year = year

    def _anchors(self, returns: pd.DataFrame) -> pd.DataFrame | None:
        if self.anchor_days is None:
            return None
        return trailing_scale(returns[self.assets], self.params.horizon_days, self.anchor_days)

    def _track_record(self, history: pd.DataFrame) -> tuple[list[pd.Timestamp], np.ndarray] | None:
        """The earlier periods whose H days have ended by the history's last day, and their realised
        returns (periods × assets); None while fewer than `track_record` (or without one)."""
        horizon = self.params.horizon_days
        positions = history.index.get_indexer(list(self.outputs))
        ended = [(asof, p) for asof, p in zip(self.outputs, positions, strict=True)
                 if p >= 0 and p + horizon < len(history)]
        if self.track_record is None or len(ended) < self.track_record:
            return None
        values = history[self.assets].to_numpy()
        realised = np.array([values[p + 1:p + 1 + horizon].sum(axis=0) for _, p in ended])
        return [asof for asof, _ in ended], realised

    def _calibration(self, view: str, record: tuple | None, anchors: pd.DataFrame | None) -> Calibration:
        """A view's calibration on the track record, if there is one; else on the held-out windows."""
        if record is None:
            return self.calibration[view]
        past, realised = record
        chosen = self.VIEWS[view]
        mixed = [mixture(self.outputs[asof][0][chosen], self.outputs[asof][1][chosen]) for asof in past]
        return Calibration.fit(realised, np.array([m for m, _ in mixed]), np.array([s for _, s in mixed]),
                               None if anchors is None else anchors.loc[pd.DatetimeIndex(past)].to_numpy())

    def member_outputs(self, returns: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Each member's location and scale (members × assets, scaled units) for the window
        ending on the returns' last day."""
        latest = preprocess.series_until(prices_of(self._history(returns, self.year)), self.params,
                                         self.scalers)
        window = latest.features[-latest.seq_len:].reshape(1, latest.seq_len, -1)
        outputs = []
        for weights in self.weights:  # the members share one network (`training.CompiledNetworks`)
            self.model.set_weights(weights)
            outputs.append(keras.ops.convert_to_numpy(self.model(window, training=False))[0])
        outputs = np.array(outputs)
        half = outputs.shape[1] // 2
        return outputs[:, :half], outputs[:, half:]

    def __call__(self, history: pd.DataFrame, horizon_days: int) -> Forecast:
        if horizon_days != self.params.horizon_days:
            raise ParameterError(f"this network forecasts {self.params.horizon_days}-day returns, "
                                 f"not {horizon_days}-day ones: set horizon_days={horizon_days}")
        asof = history.index[-1]
        if asof.year != self.year:
            self._fit(history, asof.year)
        locations, scales = in_log_units(*self.member_outputs(history), self.scalers)
        anchors = self._anchors(history)
        anchor = None if anchors is None else anchors.iloc[-1].to_numpy()
        record = self._track_record(history)
        for view, chosen in self.VIEWS.items():
            calibration = self.calibrations[view][asof] = self._calibration(view, record, anchors)
            self.forecasts[view][asof] = view_forecast(self.assets, locations[chosen], scales[chosen],
                                                       self.correlations[view], calibration, anchor)
        self.outputs[asof] = locations, scales
        return self.forecasts["mixture"][asof]

    def save_outputs(self, path: Path) -> Path:
        """Every year's `YearOutputs` and every period's member outputs, as one npz (`load_outputs`)."""
        arrays = {f"year/{year}/{name}": value for year, outputs in self.years.items()
                  for name, value in vars(outputs).items()}
        for asof, (location, scale) in self.outputs.items():
            arrays[f"period/{asof.date()}/location"], arrays[f"period/{asof.date()}/scale"] = location, scale
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as file:
            np.savez_compressed(file, assets=np.array(self.assets), **arrays)
        return Path(path)


def load_outputs(path: Path) -> tuple[list[str], dict[int, YearOutputs],
                                      dict[pd.Timestamp, tuple[np.ndarray, np.ndarray]]]:
    """The assets, years and period outputs that `YearlyNetwork.save_outputs` wrote."""
    with np.load(path) as saved:
        years: dict[int, dict] = {}
        periods: dict[pd.Timestamp, dict] = {}
        for key in saved.files:
            kind, name, field_name = (key.split("/") + ["", ""])[:3]
            if kind == "year":
                years.setdefault(int(name), {})[field_name] = saved[key]
            elif kind == "period":
                periods.setdefault(pd.Timestamp(name), {})[field_name] = saved[key]
        assets = [str(a) for a in saved["assets"]]
    return (assets, {year: YearOutputs(**fields) for year, fields in sorted(years.items())},
            {asof: (fields["location"], fields["scale"]) for asof, fields in sorted(periods.items())})


def dataset_distribution(models: list[keras.Model], dataset: Dataset,
                         indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's location and scale (scaled units) of several distribution networks (an
    ensemble's members) for some samples."""
    parts = [training.predict_distribution(model, dataset, indices) for model in models]
    return mixture([p[0] for p in parts], [p[1] for p in parts])
