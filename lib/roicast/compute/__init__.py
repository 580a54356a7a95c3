"""Compute: where work runs (a dask cluster, child processes, the idle core)."""
