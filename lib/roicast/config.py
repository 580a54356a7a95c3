"""The run's parameters: one typed model, validated before any notebook starts.

Every notebook declares the parameters it uses in its `parameters` cell with the same
defaults as here (a test keeps them in sync); the runner validates the whole set with
`RunParams`, then hands each notebook only the names its cell declares.
"""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from roicast.errors import ParameterError

NSE_STOCKS = [
    "RELIANCE.NS", "TCS.NS", "INFY.NS", "HDFCBANK.NS", "ICICIBANK.NS", "LT.NS", "SBIN.NS",
    "HINDUNILVR.NS", "ITC.NS", "BHARTIARTL.NS", "KOTAKBANK.NS", "AXISBANK.NS",
    "BAJFINANCE.NS", "ASIANPAINT.NS", "MARUTI.NS", "SUNPHARMA.NS", "TITAN.NS",
]  # fmt: skip
COMMODITY_FUTURES = {"Gold": "GC=F", "Silver": "SI=F", "Platinum": "PL=F"}
DEFAULT_YAHOO_TICKERS = NSE_STOCKS + list(COMMODITY_FUTURES.values())
VARIANT_PARAMS = (
    "architecture", "lstm_units", "attention_heads", "attention_key_dim", "dense_units",
    "dropout_lstm", "dropout_dense", "epochs", "batch_size", "learning_rate", "weight_decay",
    "clipnorm", "lr_factor", "lr_patience", "min_lr", "early_stopping_patience",
)  # fmt: skip  # what an ensemble member may change: its network and training, not the data


class RunParams(BaseModel):
    """Every parameter of a run, with the guide's values as defaults where it has one."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    run_id: str = Field("interactive", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                        description="Name of the run folder: letters, digits, '.', '_' or '-'.")
    seed: int = Field(42, ge=0, description="Seed for Python, NumPy and Keras; fixes the numbers.")

    # 01_collect
    source: Literal["sample", "yahoo", "csv"] = Field(
        "sample", description="Where prices come from: 'sample' (bundled S&P 500 data), "
        "'yahoo' (yfinance download with a cache) or 'csv' (your file, see csv_path).")
    tickers: list[str] | None = Field(
        None, description="Assets to use; None takes the source's default universe. "
        "A comma-separated string is accepted.")
    start: str | None = Field(None, description="First date, YYYY-MM-DD; None: end minus history_years.")
    end: str | None = Field(None, description="Last date, YYYY-MM-DD; None: the latest available.")
    history_years: float = Field(2.5, gt=0, le=50, description="Years of history when start is None.")
    csv_path: str | None = Field(None, description="Your CSV file when source='csv' (wide or long layout).")
    csv_date_column: str | None = Field(None, description="Date column of the CSV; None: detected by name.")
    on_missing: Literal["drop", "error"] = Field(
        "drop", description="A ticker with no data: 'drop' it with a warning, or stop with an 'error'.")
    min_assets: int = Field(2, ge=1, description="Fewest assets a run may continue with.")
    max_fill_days: int = Field(5, ge=0, le=30,
                               description="Longest gap (trading days) a price is carried forward over.")

    # 02_preprocess
    smooth_window: int = Field(5, ge=1, le=60,
                               description="Rolling-mean window of returns; 1 turns smoothing off.")
    clip_quantile: float | None = Field(
        None, gt=0, lt=0.5, description="Clip returns at this quantile and its mirror, fitted on the "
        "training period; None: no clipping.")
    scaler: Literal["minmax", "standard"] = Field(
        "minmax", description="'minmax' (0..1, the guide's) or 'standard' (mean 0, sd 1), "
        "fitted on training only.")
    seq_len: int = Field(60, ge=2, le=1000, description="Days of history in each input window.")
    horizon: int = Field(1, ge=1, le=60,
                         description="Days ahead of the window's last day that the target lies.")
    test_fraction: float = Field(0.2, gt=0, lt=0.9, description="Share of windows kept for the test period.")
    val_fraction: float = Field(0.2, gt=0, lt=0.9,
                                description="Share of the remaining training windows used for validation.")
    input_features: list[Literal["smoothed", "raw"]] = Field(
        ["smoothed", "raw"], min_length=1, description="Series in each window: 'smoothed' (the guide's) "
        "and/or 'raw' (unsmoothed log returns).")

    # 03_train
    task: Literal["regression", "direction"] = Field(
        "regression", description="'regression' of the smoothed return, or 'direction' (up/down).")
    architecture: Literal["highway", "guide"] = Field(
        "highway", description="'guide': the guide's network exactly; 'highway': the same network plus "
        "a linear autoregressive path shared across assets (LSTNet's highway).")
    direction_of: Literal["return", "smoothed"] = Field(
        "return", description="For task='direction': sign of the next raw 'return' or of the "
        "'smoothed' change.")
    lstm_units: list[int] = Field([64, 32], min_length=2, max_length=2,
                                  description="Units per direction of the two bidirectional LSTM layers.")
    attention_heads: int = Field(4, ge=1, description="Heads of the multi-head self-attention.")
    attention_key_dim: int = Field(64, ge=1, description="Key dimension of each attention head.")
    dense_units: int = Field(128, ge=1, description="Units of the ReLU dense layer.")
    dropout_lstm: float = Field(0.2, ge=0, lt=1, description="Dropout after each LSTM layer.")
    dropout_dense: float = Field(0.3, ge=0, lt=1, description="Dropout after the dense layer.")
    epochs: int = Field(120, ge=1, description="Most epochs; early stopping usually ends sooner.")
    batch_size: int = Field(32, ge=1, description="Windows per gradient step.")
    learning_rate: float | None = Field(
        None, gt=0, description="AdamW learning rate; None: 1e-3 for regression, 1e-4 for direction.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    clipnorm: float | None = Field(
        None, gt=0, description="Gradient clipping norm; None: off for regression, 1.0 for direction.")
    lr_factor: float = Field(0.5, gt=0, lt=1, description="ReduceLROnPlateau factor.")
    lr_patience: int = Field(5, ge=1, description="Epochs without improvement before the LR is cut.")
    min_lr: float = Field(1e-6, gt=0, description="Lowest learning rate ReduceLROnPlateau may set.")
    early_stopping_patience: int = Field(10, ge=1, description="Epochs without improvement before stopping.")

    # 04_evaluate
    walk_forward_folds: int = Field(
        0, ge=0, le=20, description="Walk-forward folds, each retraining on an expanding window "
        "and testing on the next block; 0 turns it off.")
    horizon_steps: int = Field(
        1, ge=1, le=20, description="Days ahead for the multi-step comparison (recursive vs one "
        "network per horizon); 1 turns it off.")

    # 05_ensemble
    n_members: int = Field(5, ge=1, le=50, description="Models in the ensemble, each with its own seed.")
    bootstrap: bool = Field(False, description="Train each member on a bootstrap resample of the windows.")
    member_variants: list[dict[str, Any]] = Field(
        [], description="Hyper-parameter sets the members after the first cycle through, each a "
        "mapping of 03_train parameters, e.g. [{lstm_units: [32, 16]}, {dropout_lstm: 0.3}]; "
        "empty: every member is 03_train's network with its own seed.")
    interval: float = Field(0.9, gt=0, lt=1, description="Nominal coverage of the members' spread interval.")
    trading_cost_bps: float = Field(5.0, ge=0, description="Cost per position change, in basis points.")

    @field_validator("tickers", "input_features", "lstm_units", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> str | None:
        if value is None:
            return None
        from datetime import date

        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a date in YYYY-MM-DD form") from exc

    @model_validator(mode="after")
    def _consistent(self) -> "RunParams":
        if self.source == "csv" and not self.csv_path:
            raise ValueError("source='csv' needs csv_path, the path of your CSV file")
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"start ({self.start}) must come before end ({self.end})")
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("test_fraction + val_fraction must stay below 0.9 to leave training data")
        if self.walk_forward_folds == 1:
            raise ValueError("walk_forward_folds must be 0 (off) or at least 2; one fold is the "
                             "chain's own split")
        if any(units < 1 for units in self.lstm_units):
            raise ValueError("lstm_units must be two positive integers, e.g. [64, 32]")
        for variant in self.member_variants:
            self._check_variant(variant)
        return self

    def _check_variant(self, variant: dict[str, Any]) -> None:
        others = sorted(set(variant) - set(VARIANT_PARAMS))
        if others:
            raise ValueError(f"member_variants entry {variant} sets {', '.join(others)}; a member "
                             f"may change only {', '.join(VARIANT_PARAMS)}")
        try:
            self.with_variant(variant)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"member_variants entry {variant}: {problems}") from None

    def with_variant(self, variant: dict[str, Any]) -> "RunParams":
        """These parameters with an ensemble member's hyper-parameter variant applied, validated."""
        return RunParams(**{**self.model_dump(), **variant, "member_variants": []})

    @property
    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-4 if self.task == "direction" else 1e-3

    @property
    def resolved_clipnorm(self) -> float | None:
        if self.clipnorm is not None:
            return self.clipnorm
        return 1.0 if self.task == "direction" else None


def _describe(name: str) -> str:
    field = RunParams.model_fields.get(name)
    return field.description if field and field.description else ""


def validate_params(values: dict[str, Any]) -> RunParams:
    """Validate a mapping of parameters; raise one `ParameterError` listing every problem."""
    try:
        return RunParams(**values)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            head = name.split(".")[0]
            message = error["msg"].removeprefix("Value error, ")
            if not name:
                lines.append(message)
                continue
            if error["type"] == "extra_forbidden":
                known = ", ".join(sorted(RunParams.model_fields))
                lines.append(f"unknown parameter '{head}'. Known parameters: {known}")
                continue
            got = error.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"parameter '{name}': {message}{shown}. {_describe(head)}".rstrip())
        raise ParameterError("Invalid parameters:\n  - " + "\n  - ".join(lines)) from None


def parse_value(text: str) -> Any:
    """Turn a command-line value into a Python literal the way YAML reads it."""
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):
        return text


def read_values(params_file: Path | None = None,
                overrides: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Merge a YAML parameter file and `-p NAME VALUE` overrides, without validating yet."""
    values: dict[str, Any] = {}
    if params_file is not None:
        path = Path(params_file)
        if not path.exists():
            raise ParameterError(f"Parameter file {path} does not exist.")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ParameterError(f"Parameter file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ParameterError(f"Parameter file {path} must be a mapping of names to values.")
        values.update(loaded)
    for name, text in overrides or []:
        values[name] = parse_value(text)
    return values


def load_params(params_file: Path | None = None,
                overrides: list[tuple[str, str]] | None = None) -> RunParams:
    """Read a parameter file and overrides, then validate them."""
    return validate_params(read_values(params_file, overrides))


def notebook_params(namespace: dict[str, Any], *saved: dict[str, Any]) -> RunParams:
    """Validate the parameters a notebook defined (its `parameters` cell) over saved ones.

    `saved` are the parameters earlier notebooks recorded (preprocess.json's, train.json's),
    later ones overriding earlier ones; the notebook's own parameters override them all.
    """
    merged: dict[str, Any] = {}
    for values in saved:
        merged.update(values)
    mine = {name: namespace[name] for name in RunParams.model_fields if name in namespace}
    return validate_params({**merged, **mine})
