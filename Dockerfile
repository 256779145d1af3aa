# The image of every Airflow service in docker-compose.yaml: Airflow's own image at the version requirements.txt
# pins, plus the tested set and marketkeeper (dags/, include/, plugins/, scripts/ under /opt/marketkeeper).
# tests/unit/test_compose.py keeps the tag and the pins in step.
FROM apache/airflow:3.3.2-python3.11

# The backup and restore-drill tools: pg_dump/pg_restore of the ledger server's major version (the compose
# file's postgres:15), redis-cli/redis-check-rdb and a redis-server for the Redis drill's throwaway server,
# and influxd (backup/restore -portable) from the InfluxDB image the stack runs.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 redis-tools redis-server \
    && rm -rf /var/lib/apt/lists/*
COPY --from=influxdb:1.8 /usr/bin/influxd /usr/bin/influxd
USER airflow

COPY --chown=airflow:root requirements.txt /opt/marketkeeper/requirements.txt
RUN pip install --no-cache-dir -r /opt/marketkeeper/requirements.txt

COPY --chown=airflow:root . /opt/marketkeeper
RUN pip install --no-cache-dir --no-deps -e /opt/marketkeeper
WORKDIR /opt/marketkeeper
ENV GX_ANALYTICS_ENABLED=False
