"""Runs: the notebook chain, its store of records, reports, sweeps and tracking."""
