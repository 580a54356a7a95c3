"""Forecast (06): a finished run's forecast for the days after its data, and its serving."""
