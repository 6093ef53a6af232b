"""Driving Dagster from Python: submitting and filming runs (runner) and reading where one stands (status)."""
