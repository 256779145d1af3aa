"""Airflow plugins of marketkeeper: the ops page and its endpoints (:mod:`marketkeeper_ops`)."""
