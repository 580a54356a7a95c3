"""The file MLflow logs as the served model's code (models from code, no pickle): one run's
`serving.RunForecaster`, whose run id the model's config gives."""

from mlflow.models import set_model

from roicast.forecasting.serving import RunForecaster

set_model(RunForecaster())
