"""Collect (01): prices from Yahoo Finance, a user's CSV or the bundled sample, checked, on one calendar."""
