"""docker-compose.yaml runs the stack ``make up-celery`` runs (scripts/airflow-celery.sh), with the same settings.

No Docker engine runs here, so the file is read, not started: its services, images, ports, volumes and
environment are checked against the script's defaults, the Dockerfile, ``.env.example`` and the README.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "airflow-celery.sh"
STORES = {"postgres", "redis", "influxdb"}
AIRFLOW = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker-1",
    "airflow-worker-2",
}
#: The component each long-running Airflow service runs (the word after ``scripts/airflow.sh``).
COMPONENT = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}


@cache
def script_defaults() -> dict[str, str]:
    """``NAME=${NAME:-default}`` (exported or not) of the script, with ``$OTHER`` in a default resolved."""
    found: dict[str, str] = {}
    pattern = re.compile(r"^(?:export )?(\w+)=\$\{(\w+):-(.*)\}$")
    for line in SCRIPT.read_text().splitlines():
        match = pattern.match(line.strip())
        if match:
            name, _, default = match.groups()
            found[name] = re.sub(r"\$(\w+)", lambda m: found.get(m.group(1), m.group(0)), default)
    return found


@cache
def env_example() -> dict[str, str]:
    """The uncommented ``NAME=value`` lines of ``.env.example``."""
    pairs = (line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs if not name.lstrip().startswith("#")}


def interpolate(value: Any) -> Any:
    """Compose's ``${NAME:-default}`` with the values of ``.env.example`` (an empty one takes the default)."""
    if isinstance(value, str):
        return re.sub(
            r"\$\{(\w+)(?::-([^}]*))?\}",
            lambda m: env_example().get(m.group(1)) or (m.group(2) or ""),
            value.replace("$$", "\0"),
        ).replace("\0", "$")
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@cache
def compose() -> dict[str, Any]:
    return dict(interpolate(yaml.safe_load((ROOT / "docker-compose.yaml").read_text())))


def service(name: str) -> dict[str, Any]:
    return dict(compose()["services"][name])


def environment(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in service(name).get("environment", {}).items()}


def db_index(url: str) -> int:
    return int(urlsplit(url).path.strip("/") or 0)


def db_name(url: str) -> str:
    return urlsplit(url.removeprefix("db+")).path.strip("/")


def test_the_stack_has_the_stores_and_every_airflow_component() -> None:
    assert set(compose()["services"]) == STORES | AIRFLOW


def test_every_long_running_service_has_a_health_check() -> None:
    for name in (STORES | AIRFLOW) - {"airflow-init"}:
        check = service(name).get("healthcheck", {})
        assert check.get("test"), f"{name} has no health check"


def test_images_are_pinned_and_airflow_is_the_version_requirements_pin() -> None:
    assert {name: service(name)["image"] for name in STORES} == {
        "postgres": "postgres:15",
        "redis": "redis:7",
        "influxdb": "influxdb:1.8",
    }
    pins = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    airflow = pins["apache-airflow"]
    assert "apache-airflow-providers-celery" in pins
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^FROM apache/airflow:{re.escape(airflow)}-python3\.11$", dockerfile, re.M), dockerfile
    assert "requirements.txt" in dockerfile
    for name in AIRFLOW:
        assert service(name)["build"] == "."
        assert service(name)["image"] == f"marketkeeper-airflow:{airflow}"


def test_ports_bind_to_loopback_and_match_make_up_celery() -> None:
    published = {name: [str(p) for p in service(name).get("ports", [])] for name in compose()["services"]}
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    defaults, example = script_defaults(), env_example()
    api_port = defaults["AIRFLOW__API__PORT"]
    assert published["airflow-apiserver"] == [f"127.0.0.1:{api_port}:{api_port}"]
    assert environment("airflow-apiserver")["AIRFLOW__API__PORT"] == api_port
    pg_port = str(urlsplit(defaults["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).port)
    redis_port = str(urlsplit(defaults["AIRFLOW__CELERY__BROKER_URL"]).port)
    assert published["postgres"] == [f"127.0.0.1:{pg_port}:5432"]
    assert str(urlsplit(example["DATABASE_URL"]).port) == pg_port
    assert published["redis"] == [f"127.0.0.1:{redis_port}:6379"]
    assert str(urlsplit(example["REDIS_URL"]).port) == redis_port
    influx_port = str(urlsplit(example["INFLUXDB_URL"]).port)
    assert published["influxdb"] == [f"127.0.0.1:{influx_port}:8086"]
    assert {name for name, ports in published.items() if ports} == {"airflow-apiserver"} | STORES


def test_influxdb_rpc_is_reachable_from_airflow_on_the_compose_network_only() -> None:
    from marketkeeper.backups.config import BackupSettings

    influxdb = service("influxdb")
    rpc_port = str(BackupSettings.model_fields["influxdb_rpc_port"].default)
    assert influxdb["environment"]["INFLUXDB_BIND_ADDRESS"] == f":{rpc_port}"
    assert [str(p) for p in influxdb["expose"]] == [rpc_port]
    assert not [p for p in influxdb["ports"] if str(p).endswith(f":{rpc_port}")], "RPC has no auth: never published"
    for name in AIRFLOW:
        env = environment(name)
        rpc = BackupSettings(influxdb_rpc_address=env.get("INFLUXDB_RPC_ADDRESS")).rpc_address(env["INFLUXDB_URL"])
        assert rpc == f"influxdb:{rpc_port}"


def test_airflow_environment_matches_make_up_celery() -> None:
    defaults = script_defaults()
    for name in AIRFLOW:
        env = environment(name)
        assert env["AIRFLOW__CORE__EXECUTOR"] == defaults["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        broker, cache_url = env["AIRFLOW__CELERY__BROKER_URL"], env["REDIS_URL"]
        assert db_index(broker) == db_index(defaults["AIRFLOW__CELERY__BROKER_URL"]) == 1
        assert db_index(cache_url) == db_index(env_example()["REDIS_URL"]) == 0
        metadata = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert db_name(metadata) == db_name(defaults["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]) == "airflow"
        assert metadata.split("://")[0] == defaults["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("://")[0]
        # The script derives the result backend from the metadata DB the same way.
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{metadata}"
        assert defaults["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{defaults['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}"
        assert db_name(env["DATABASE_URL"]) == db_name(defaults["DATABASE_URL"]) == "marketkeeper"
        assert urlsplit(env["DATABASE_URL"]).scheme == "postgresql"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["GX_ANALYTICS_ENABLED"] == "False"
        # Connections are derived from the store variables by scripts/airflow.sh, never spelled out twice.
        assert {"DATABASE_URL", "REDIS_URL", "INFLUXDB_URL"} <= set(env)
        assert not [k for k in env if k.startswith("AIRFLOW_CONN_")]
        # Nothing pretends the containers share a filesystem.
        assert "MARKETKEEPER_SHARED_FILESYSTEM" not in env
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"], "every component needs the same JWT secret"


def test_the_store_variable_names_are_those_the_cli_and_scripts_read() -> None:
    from marketkeeper.airflow import localenv
    from tests.airflow_cli import STORE_ENV

    env = environment("airflow-scheduler")
    stores = {k for k in env if k.startswith(("DATABASE_", "REDIS_", "INFLUXDB_"))}
    assert stores <= set(STORE_ENV)
    assert stores <= set(env_example())
    source = Path(localenv.__file__).read_text()
    for name in ("DATABASE_URL", "INFLUXDB_URL", "REDIS_URL"):
        assert name in source


def test_each_service_runs_what_the_script_runs() -> None:
    text = SCRIPT.read_text()
    components = re.search(r"^for component in ([\w -]+); do$", text, re.M)
    assert components is not None
    assert set(components.group(1).split()) == set(COMPONENT.values())
    for name, component in COMPONENT.items():
        assert service(name)["entrypoint"] == ["/opt/marketkeeper/scripts/airflow.sh"]
        assert service(name)["command"] == [component]
    assert service("airflow-init")["entrypoint"] == ["/opt/marketkeeper/scripts/airflow-celery.sh"]
    assert service("airflow-init")["command"] == ["init"]
    defaults = script_defaults()
    workers = sorted(n for n in AIRFLOW if n.startswith("airflow-worker-"))
    assert len(workers) == int(defaults["workers"])
    assert '--celery-hostname "worker-$n@%h" --concurrency "$concurrency"' in text
    for n, name in enumerate(workers, start=1):
        assert service(name)["entrypoint"] == ["/opt/marketkeeper/scripts/airflow.sh"]
        assert service(name)["command"] == [
            "celery",
            "worker",
            "--celery-hostname",
            f"worker-{n}@%h",
            "--concurrency",
            defaults["concurrency"],
        ]
        assert f"worker-{n}@" in " ".join(service(name)["healthcheck"]["test"])


def test_airflow_waits_for_init_and_the_stores() -> None:
    for name in AIRFLOW - {"airflow-init"}:
        depends = service(name)["depends_on"]
        assert depends["airflow-init"] == {"condition": "service_completed_successfully"}
        for store in STORES:
            assert depends[store] == {"condition": "service_healthy"}
    assert set(service("airflow-init")["depends_on"]) == {"postgres", "redis"}


def test_volumes_are_declared_and_task_logs_shared() -> None:
    declared = set(compose()["volumes"])
    used = {
        str(volume).split(":", 1)[0] for spec in compose()["services"].values() for volume in spec.get("volumes", [])
    }
    assert used == declared == {"postgres-data", "influxdb-data", "airflow-logs"}
    for name in AIRFLOW:
        home = environment(name)["MARKETKEEPER_AIRFLOW_HOME"]
        assert f"airflow-logs:{home}/logs" in service(name)["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in service("postgres")["volumes"]


def test_secrets_stay_out_of_the_repository() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()
    example = env_example()
    assert example["AIRFLOW_JWT_SECRET"] == "" and example["AIRFLOW_FERNET_KEY"] == ""
    raw = (ROOT / "docker-compose.yaml").read_text()
    for name in set(re.findall(r"(?<!\$)\$\{(\w+)", raw)):
        assert name in example, f"docker-compose.yaml reads {name}, which .env.example does not document"


def test_make_up_celery_runs_the_script() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^up-celery:.*\n\t(.*)$", makefile, re.M)
    assert target is not None and "scripts/airflow-celery.sh" in target.group(1)


def test_the_readme_says_what_the_stack_does() -> None:
    readme = (ROOT / "README.md").read_text()
    if "up-celery" not in readme:
        pytest.skip("README.md does not describe make up-celery yet")
    defaults = script_defaults()
    assert f"Redis DB {db_index(defaults['AIRFLOW__CELERY__BROKER_URL'])}" in readme
    assert f"`{db_name(defaults['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'])}`" in readme
    assert f"127.0.0.1:{defaults['AIRFLOW__API__PORT']}" in readme
    assert "MARKETKEEPER_SHARED_FILESYSTEM=1" in readme
    assert "docker compose up" in readme


def test_the_image_carries_the_backup_tools_of_the_stack_s_servers() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    postgres_major = service("postgres")["image"].split(":")[1]
    assert f"postgresql-client-{postgres_major}" in dockerfile  # pg_dump refuses a newer server's dumps
    assert "redis-tools" in dockerfile and "redis-server" in dockerfile  # --rdb, redis-check-rdb, the drill
    assert f"COPY --from={service('influxdb')['image']} /usr/bin/influxd /usr/bin/influxd" in dockerfile
    assert dockerfile.rstrip().splitlines()[-1] != "USER root" and "USER airflow" in dockerfile
