"""Airflow plugins of marketkeeper; the ops monitoring page arrives with its issue."""
