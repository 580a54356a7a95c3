"""The run's parameters: one typed model, validated before any notebook starts.

Every notebook declares the parameters it uses in its `parameters` cell with the same
defaults as here (a test keeps them in sync); the runner validates the whole set with
`RunParams`, then hands each notebook only the names its cell declares.
"""

import ast
import difflib
import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from roicast import paths
from roicast.errors import ParameterError
from roicast.task import Task, task_of

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
SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit; every ensemble member's seed must be one too
MAX_UNITS = 4096  # per LSTM direction: far beyond any network this data supports
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})  # what IPython defines
BACKEND_INSTALL = {"tensorflow": ".venv/bin/pip install -e .", "torch": '.venv/bin/pip install -e ".[torch]"',
                   "jax": '.venv/bin/pip install -e ".[jax]"'}  # pyproject.toml's extras
PLAIN_LITERALS = (str, int, float, bool, type(None), list, dict)  # what papermill can inject


class RunParams(BaseModel):
    """Every parameter of a run, with the guide's values as defaults where it has one."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    run_id: str = Field("interactive", description="Name of the run folder: 1 to 100 letters, digits, "
                        "'.', '_' or '-', starting with a letter or digit.")
    seed: int = Field(42, ge=0, le=SEED_MAX,
                      description="Seed for Python, NumPy and Keras; fixes the numbers.")

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
    csv_path: str | None = Field(
        None, description="Your CSV file when source='csv' (wide or long layout, or one asset's "
        "OHLCV export); a relative path starts from the folder roicast is run in.")
    csv_date_column: str | None = Field(None, description="Date column of the CSV; None: detected by name.")
    csv_date_format: str | None = Field(
        None, description="Date format of the CSV, e.g. '%d/%m/%Y'; None: ISO dates, or day-first "
        "or month-first as the data shows (a file that leaves it open stops and asks for this).")
    csv_decimal: Literal[".", ","] | None = Field(
        None, description="Decimal mark of the CSV's prices; None: as the prices show ('1,790.80', "
        "'1.790,80', '182,01'); a file whose prices leave it open stops and asks for this.")
    csv_ticker: str | None = Field(
        None, min_length=1, description="Name of the asset of a one-asset CSV (an export with Open, "
        "High, Low, Close, Adj Close, Volume; Adj Close is used, else Close); None: the file's name.")
    on_missing: Literal["drop", "error"] = Field(
        "drop", description="A ticker with no data: 'drop' it with a warning, or stop with an 'error'.")
    min_assets: int = Field(2, ge=1, le=5000, description="Fewest assets a run may continue with.")
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
    scale_by: Literal["feature", "asset"] = Field(
        "asset", description="'feature': one scaler per feature and asset (the guide's); 'asset': one "
        "affine map per asset for all its features, fitted on its training returns, so the smoothed "
        "series stays the exact mean of the scaled raw series.")
    seq_len: int = Field(60, ge=2, le=1000, description="Days of history in each input window.")
    horizon: int = Field(1, ge=1, le=60,
                         description="Days ahead of the window's last day that the target lies.")
    test_fraction: float = Field(0.2, gt=0, lt=0.9, description="Share of windows kept for the test period.")
    val_fraction: float = Field(0.2, gt=0, lt=0.9,
                                description="Share of the remaining training windows used for validation.")
    input_features: list[Literal["smoothed", "raw"]] = Field(
        ["smoothed", "raw"], min_length=1, description="Series in each window: 'smoothed' (the guide's) "
        "and/or 'raw' (unsmoothed log returns).")
    target: Literal["smoothed", "raw", "sum"] = Field(
        "smoothed", description="What task='regression' forecasts: 'smoothed' (the guide's: tomorrow's "
        "smooth_window-day mean return), 'raw' (tomorrow's log return itself; the smoothed series "
        "may stay an input feature) or 'sum' (the sum of the log returns over the horizon_days "
        "trading days after the window: the month ahead M6 scores).")
    horizon_days: int = Field(20, ge=1, le=60, description="Trading days of the month-ahead target "
                              "(target='sum') and of the periods the distribution scores use (M6: 20).")

    # 03_train
    task: Literal["regression", "direction"] = Field(
        "regression", description="'regression' of the smoothed return, or 'direction' (up/down).")
    output: Literal["direct", "decomposed", "distribution"] | None = Field(
        None, description="'direct': the network forecasts the smoothed target; 'decomposed': it "
        "forecasts tomorrow's raw return and the model adds the part of the target already known "
        "(needs scale_by='asset', 'raw' among input_features, horizon 1, smooth_window > 1); "
        "'distribution': each asset's location (as None would choose) and scale, trained on the "
        "Gaussian negative log-likelihood (task='regression' only); None: decomposed where the "
        "data allow it, else direct.")
    architecture: Literal["highway", "guide"] = Field(
        "highway", description="'guide': the guide's network exactly; 'highway': the same network plus "
        "a linear autoregressive path shared across assets (LSTNet's highway).")
    direction_of: Literal["return", "smoothed"] = Field(
        "return", description="For task='direction': sign of the next raw 'return' or of the "
        "'smoothed' change.")
    lstm_units: list[int] = Field([64, 32], min_length=2, max_length=2,
                                  description="Units per direction of the two bidirectional LSTM layers.")
    attention_heads: int = Field(4, ge=1, le=64, description="Heads of the multi-head self-attention.")
    attention_key_dim: int = Field(64, ge=1, le=1024, description="Key dimension of each attention head.")
    dense_units: int = Field(128, ge=1, le=8192, description="Units of the ReLU dense layer.")
    dropout_lstm: float = Field(0.2, ge=0, lt=1, description="Dropout after each LSTM layer.")
    dropout_dense: float = Field(0.3, ge=0, lt=1, description="Dropout after the dense layer.")
    epochs: int = Field(120, ge=1, le=10_000, description="Most epochs; early stopping usually ends sooner.")
    batch_size: int = Field(32, ge=1, le=65_536, description="Windows per gradient step.")
    learning_rate: float | None = Field(
        None, gt=0, le=1, description="AdamW learning rate; None: 1e-3 for regression, 1e-4 for direction.")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="AdamW weight decay.")
    clipnorm: float | None = Field(
        None, gt=0, le=1000, description="Gradient clipping norm; None: off for regression, 1.0 for "
        "direction.")
    lr_factor: float = Field(0.5, gt=0, lt=1, description="ReduceLROnPlateau factor.")
    lr_patience: int = Field(5, ge=1, le=1000, description="Epochs without improvement before the LR is cut.")
    min_lr: float = Field(1e-6, gt=0, le=0.1, description="Lowest learning rate ReduceLROnPlateau may set.")
    early_stopping_patience: int = Field(10, ge=1, le=1000,
                                         description="Epochs without improvement before stopping.")
    backend: Literal["tensorflow", "torch", "jax"] = Field(
        "tensorflow", description="Keras backend that trains the network: 'tensorflow' (the "
        "reference numbers), 'torch' or 'jax' (see the README's 'On a GPU').")
    init_from: str | None = Field(
        None, description="Run id whose model.keras weights training starts from (fine-tuning on "
        "newer data): same network and same assets; None: a fresh start.")
    freeze_layers: list[str] = Field(
        [], description="Layers kept at their starting weights while training, e.g. [bilstm_1, "
        "bilstm_2]; names as 03_train lists them. A comma-separated string is accepted.")

    # 04_evaluate
    walk_forward_folds: int = Field(
        0, ge=0, le=20, description="Walk-forward folds, each retraining on an expanding window "
        "and testing on the next block; 0 turns it off.")
    walk_forward_unit: Literal["block", "year"] = Field(
        "block", description="'block': walk_forward_folds test blocks of the test period's length; "
        "'year': one fold per calendar year of test targets (walk_forward_folds is then unused).")
    walk_forward_train: Literal["expanding", "rolling"] = Field(
        "expanding", description="Training window of a yearly fold: every earlier day ('expanding') "
        "or only the walk_forward_train_years years before the test year ('rolling').")
    walk_forward_train_years: int = Field(
        5, ge=1, le=50, description="Calendar years of training for walk_forward_train='rolling', and "
        "the years left for training before the first test year by default.")
    walk_forward_first_year: int | None = Field(
        None, ge=1900, le=2200, description="First test year of walk_forward_unit='year'; None: the "
        "first year that leaves walk_forward_train_years of training.")
    walk_forward_members: int = Field(
        1, ge=1, le=50, description="Networks (seeds seed, seed+1, …) averaged in each walk-forward fold.")
    horizon_steps: int = Field(
        1, ge=1, le=20, description="Days ahead for the multi-step comparison (recursive vs one "
        "network per horizon); 1 turns it off.")
    distribution_garch: bool = Field(
        False, description="Also score GARCH(1,1) distributions in 04's 'Distribution and ranks' (one "
        "fit per asset and period: slow).")
    model_plugins: list[str] = Field(
        [], description="Python files that register more forecasters (`roicast.models.forecaster."
        "register`): 04 and its walk-forward folds score them beside the baselines, and 06 "
        "forecasts with them.")

    # 05_ensemble
    n_members: int = Field(5, ge=1, le=50, description="Models in the ensemble, each with its own seed.")
    bootstrap: bool = Field(False, description="Train each member on a bootstrap resample of the windows.")
    member_variants: list[dict[str, Any]] = Field(
        [], description="Hyper-parameter sets the members after the first cycle through, each a "
        "mapping of 03_train parameters, e.g. [{lstm_units: [32, 16]}, {dropout_lstm: 0.3}]; "
        "empty: every member is 03_train's network with its own seed.")
    interval: float = Field(0.9, gt=0, lt=1, description="Nominal coverage of the members' spread interval.")
    trading_cost_bps: float = Field(5.0, ge=0, le=1000,
                                    description="Cost per position change, in basis points.")

    # 06_forecast
    asof: str | None = Field(None, description="Day the forecast is made on, YYYY-MM-DD (a day without "
                             "prices rolls back to the trading day before); None: the newest price.")
    forecast_days: int = Field(5, ge=1, le=60, description="Trading days after asof to forecast.")
    max_staleness_days: int = Field(5, ge=0, le=10_000, description="Business days the newest price may "
                                    "lie behind today before the forecast warns that it is stale.")
    forecast_source: Literal["sample", "yahoo", "csv"] | None = Field(
        None, description="Where the forecast's new prices come from; None: the run's own source.")
    forecast_csv_path: str | None = Field(
        None, description="A CSV of new prices for forecast_source='csv' (or a csv run); None: csv_path.")
    refit: bool = Field(
        False, description="Also forecast with the network retrained on every window of the run's "
        "dataset up to asof for 03's best number of epochs (model 'hybrid_refit'; it has no test "
        "score of its own).")

    @field_validator("run_id", "init_from")
    @classmethod
    def _run_folder_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return paths.check_run_id(value)
        except ParameterError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("tickers", "input_features", "lstm_units", "freeze_layers", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("start", "end", "asof", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> str | None:
        if value is None:
            return None
        from datetime import date

        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a date in YYYY-MM-DD form") from exc

    @field_validator("csv_path", "forecast_csv_path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return None if value is None else str(user_path(value))

    @field_validator("model_plugins", mode="before")
    @classmethod
    def _python_files(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            return value
        files = [user_path(str(name)) for name in value]
        for file in files:
            if file.suffix != ".py" or not file.is_file():
                raise ValueError(f"{file} is not a Python file")
        return [str(file) for file in files]

    @field_validator("csv_date_format")
    @classmethod
    def _strftime(cls, value: str | None) -> str | None:
        if value is not None and "%" not in value:
            raise ValueError(f"'{value}' is not a date format; write one with strftime codes, "
                             "e.g. '%d/%m/%Y' for 31/12/2024 or '%m/%d/%Y' for 12/31/2024")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "RunParams":
        if self.source == "csv" and not self.csv_path:
            raise ValueError("source='csv' needs csv_path, the path of your CSV file")
        if self.forecast_source == "csv" and not (self.forecast_csv_path or self.csv_path):
            raise ValueError("forecast_source='csv' needs forecast_csv_path, the CSV of new prices")
        if self.forecast_csv_path and (self.forecast_source or self.source) != "csv":
            raise ValueError(f"forecast_csv_path is read only when the forecast's prices come from a "
                             f"CSV, not from '{self.forecast_source or self.source}': add "
                             "forecast_source='csv'")
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"start ({self.start}) must come before end ({self.end})")
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("test_fraction + val_fraction must stay below 0.9 to leave training data")
        if self.init_from is not None and self.init_from == self.run_id:
            raise ValueError(f"init_from names this run itself ({self.run_id}); fine-tune into a new "
                             "run, so that the earlier network stays as it was")
        if self.walk_forward_folds == 1:
            raise ValueError("walk_forward_folds must be 0 (off) or at least 2; one fold is the "
                             "chain's own split")
        if self.walk_forward_train == "rolling" and self.walk_forward_unit != "year":
            raise ValueError("walk_forward_train='rolling' needs walk_forward_unit='year': its window "
                             "is walk_forward_train_years calendar years")
        if not all(1 <= units <= MAX_UNITS for units in self.lstm_units):
            raise ValueError(f"lstm_units must be two integers from 1 to {MAX_UNITS}, e.g. [64, 32]")
        if self.seed + self.n_members - 1 > SEED_MAX:
            raise ValueError(f"seed + n_members - 1, the last ensemble member's seed, must not "
                             f"exceed {SEED_MAX} (NumPy's largest seed)")
        if self.min_lr >= self.resolved_learning_rate:
            raise ValueError(f"min_lr ({self.min_lr:g}) must stay below the learning rate "
                             f"({self.resolved_learning_rate:g})")
        if self.target != "smoothed" and not self.task_spec.forecasts_target:
            raise ValueError(f"target='{self.target}' is a regression target; the direction task "
                             "chooses its label with direction_of")
        if self.target == "sum" and self.output == "decomposed":
            raise ValueError("output='decomposed' splits the smoothed target into its known days and "
                             "tomorrow's return; nothing of target='sum' is known on the window's last "
                             "day: use output='direct' or leave output unset")
        if self.target == "raw" and self.output == "decomposed":
            raise ValueError("output='decomposed' splits the smoothed target into its known days and "
                             "tomorrow's return; with target='raw' the target is tomorrow's return "
                             "itself: use output='direct' or leave output unset")
        if self.distributional and not self.task_spec.forecasts_target:
            raise ValueError("output='distribution' forecasts the regression target's distribution; "
                             "use task='regression'")
        if self.output == "decomposed" and not self._can_decompose:
            raise ValueError("output='decomposed' needs scale_by='asset', 'raw' among input_features, "
                             "horizon=1, smooth_window > 1 and task='regression': the known part of the "
                             "target is then exactly the mean of the window's last raw returns")
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
        return self.task_spec.learning_rate

    @property
    def _can_decompose(self) -> bool:
        return (self.scale_by == "asset" and "raw" in self.input_features and self.horizon == 1
                and self.smooth_window > 1 and self.task_spec.forecasts_target and self.target == "smoothed")

    @property
    def resolved_output(self) -> str:
        if self.output is not None:
            return self.output
        return "decomposed" if self._can_decompose else "direct"

    @property
    def distributional(self) -> bool:
        """Whether the network forecasts a distribution (location and scale) per asset."""
        return self.output == "distribution"

    @property
    def location_output(self) -> str:
        """How the network forms its point forecast (a distribution's location): direct or decomposed."""
        if self.distributional:
            return "decomposed" if self._can_decompose else "direct"
        return self.resolved_output

    @property
    def resolved_clipnorm(self) -> float | None:
        if self.clipnorm is not None:
            return self.clipnorm
        return self.task_spec.clipnorm

    @property
    def task_spec(self) -> Task:
        """The `Task` that `task` names: what the chain does differently for it."""
        return task_of(self.task)


def require_backend(backend: str) -> None:
    """Stop before a run starts if its Keras backend's framework is not installed: its kernels
    would fail on their first `import keras`."""
    if find_spec(backend) is None:
        raise ParameterError(f"backend '{backend}' needs {backend}, which is not installed here; "
                             f"install it with {BACKEND_INSTALL[backend]}, or choose another backend.")


def user_path(text: str) -> Path:
    """`text` as an absolute path; a relative one starts from the folder roicast was run in.

    That is the working directory, except in a notebook opened in JupyterLab, whose kernel
    runs in notebooks/: there a path that notebooks/ does not hold starts from the
    repository root, as the README's examples do. The runner validates in its own process,
    so the notebooks it starts (also in notebooks/) receive absolute paths.
    """
    path = Path(text).expanduser()
    if path.is_absolute():
        return path
    cwd = Path(os.getcwd())
    if cwd.resolve() == paths.NOTEBOOKS_DIR.resolve() and not (cwd / path).exists():
        return paths.REPO_ROOT / path
    return cwd / path


def _unknown(name: str) -> str:
    """'unknown parameter …' with the nearest parameter names, or all of them."""
    close = difflib.get_close_matches(name, RunParams.model_fields, n=3)
    if close:
        return f"unknown parameter '{name}' (did you mean {' or '.join(repr(c) for c in close)}?)"
    return f"unknown parameter '{name}'. Known parameters: {', '.join(sorted(RunParams.model_fields))}"


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
                lines.append(_unknown(head))
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


def _literal_assignments(source: str) -> set[str]:
    """Names a cell assigns if it holds nothing but `name = literal` lines, else none.

    Those are the cells that set parameters: the `parameters` cell and the one papermill
    injects after it (tests/test_project.py keeps the former literal-only).
    """
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return set()
    if not body or not all(isinstance(node, ast.Assign) and _is_literal(node.value) for node in body):
        return set()
    return {target.id for node in body for target in node.targets if isinstance(target, ast.Name)}


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError):
        return False
    return True


def unknown_names(namespace: dict[str, Any]) -> list[str]:
    """Globals of a notebook that look like parameters but are none: typos such as seq_lenn.

    A candidate holds a plain literal (what papermill injects), is not private, not a
    parameter and not one of IPython's names. In a kernel, whose input history is `In`,
    only names set by literal-only cells count, so the notebook's own variables (a dict
    read from train.json, a list built later) never do.
    """
    history = namespace.get("In")
    names = set().union(*map(_literal_assignments, history)) if isinstance(history, list) else set(namespace)
    return sorted(name for name in names
                  if name in namespace and isinstance(namespace[name], PLAIN_LITERALS)
                  and not name.startswith("_") and name not in RunParams.model_fields
                  and name not in IPYTHON_NAMES)


def notebook_params(namespace: dict[str, Any], *saved: dict[str, Any]) -> RunParams:
    """Validate the parameters a notebook defined (its `parameters` cell) over saved ones.

    `saved` are the parameters earlier notebooks recorded (preprocess.json's, train.json's),
    later ones overriding earlier ones; the notebook's own parameters override them all.
    A name that is no parameter (papermill's `-p seq_lenn 30` only warns) stops the notebook
    with a `ParameterError`, whoever ran it.
    """
    unknown = unknown_names(namespace)
    if unknown:
        raise ParameterError("Invalid parameters:\n  - " + "\n  - ".join(map(_unknown, unknown)))
    merged: dict[str, Any] = {}
    for values in saved:
        merged.update(values)
    mine = {name: namespace[name] for name in RunParams.model_fields if name in namespace}
    return validate_params({**merged, **mine})
