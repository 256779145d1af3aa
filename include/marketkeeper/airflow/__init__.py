"""The only Airflow-aware code of marketkeeper: hooks, provider registration, store resolution for tasks."""
