# The image of every Airflow service in docker-compose.yaml: Airflow's own image at the version requirements.txt
# pins, plus the tested set and marketkeeper (dags/, include/, plugins/, scripts/ under /opt/marketkeeper).
# tests/unit/test_compose.py keeps the tag and the pins in step.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt /opt/marketkeeper/requirements.txt
RUN pip install --no-cache-dir -r /opt/marketkeeper/requirements.txt

COPY --chown=airflow:root . /opt/marketkeeper
RUN pip install --no-cache-dir --no-deps -e /opt/marketkeeper
WORKDIR /opt/marketkeeper
ENV GX_ANALYTICS_ENABLED=False
