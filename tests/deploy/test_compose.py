"""deploy/docker-compose.staging.yml and the laptop's deploy/docker-compose.yml, checked offline:
the Compose specification's schema, and that what they run, name and wait for exists (settings,
commands, health checks, files)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from app.core.config import Settings
from tests.deploy.checks import check_command, check_jsonschema, is_setting, load_yaml
from tests.support import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
STAGING = DEPLOY / "docker-compose.staging.yml"
LAPTOP = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
TASKGATE_SERVICES = {"api-1", "api-2", "api-3", "worker", "scheduler", "migrate", "flower"}
API_SERVICES = {"api-1", "api-2", "api-3"}
# The processes of each file that run the taskgate image, and the environment each runs in.
PROCESSES = {
    STAGING: (TASKGATE_SERVICES, "staging"),
    LAPTOP: ({"api", "worker", "scheduler", "migrate"}, "local"),
}
# Compose's own variables (image names, the bucket and the public S3 address), not settings.
COMPOSE_VARIABLES = {
    "TASKGATE_IMAGE",
    "TASKGATE_FLOWER_IMAGE",
    "TASKGATE_S3_BUCKET",
    "TASKGATE_PUBLIC_S3_URL",
}
# ${NAME}, ${NAME:-default}, ${NAME:?error}; `$$` is a literal dollar for the container's shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?]))?[^}]*\}")


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(path)
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(STAGING)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module", params=[STAGING, LAPTOP], ids=["staging", "laptop"])
def compose_file(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            values[name] = value
    return values


def _interpolated(text: str, values: dict[str, str]) -> str:
    """`text` with every `${…}` replaced as compose would, from `values` (or the default)."""

    def one(match: re.Match[str]) -> str:
        name, kind = match.group(1), match.group(2)
        if name in values:
            return values[name]
        default = match.group(0)[2 + len(name) :].removeprefix(":")
        assert kind == "-", f"${{{name}}} has neither a value nor a default"
        return default.removeprefix("-").removesuffix("}")

    return INTERPOLATION.sub(one, text)


class TestEveryComposeFile:
    def test_validates_against_the_compose_specification(self, compose_file: Path) -> None:
        checked = check_jsonschema("vendor.compose-spec", compose_file)

        assert checked.returncode == 0, checked.stdout + checked.stderr

    def test_every_taskgate_variable_is_a_setting(self, compose_file: Path) -> None:
        names = {
            name
            for service in _load(compose_file)["services"].values()
            for name in service.get("environment", {})
            if name.startswith("TASKGATE_")
        }
        if compose_file == STAGING:
            names |= {name for name in _env_example() if name.startswith("TASKGATE_")}

        assert "TASKGATE_DATABASE__URL" in names
        assert {name for name in names - COMPOSE_VARIABLES if not is_setting(name)} == set()

    def test_each_process_gets_settings_that_validate(
        self, compose_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        processes, environment = PROCESSES[compose_file]
        services = _load(compose_file)["services"]
        # The laptop's file sets nothing: every variable it reads has a default.
        filled = {}
        if compose_file == STAGING:
            filled = {name: value or "s" * 48 for name, value in _env_example().items()}

        for name in processes:
            with monkeypatch.context() as env:
                for variable, value in services[name]["environment"].items():
                    env.setenv(variable, _interpolated(str(value), filled))

                settings = Settings()

            assert settings.env.value == environment, name
            assert settings.database.url.startswith("postgresql+asyncpg://taskgate:"), name
            assert settings.s3.endpoint_url == "http://minio:9000", name

    def test_runs_commands_the_cli_has(self, compose_file: Path) -> None:
        processes, _ = PROCESSES[compose_file]
        services = _load(compose_file)["services"]

        for name in processes - {"flower"}:
            check_command(services[name]["command"])

    def test_workers_scale_with_no_fixed_name_or_host_port(self, compose_file: Path) -> None:
        services = _load(compose_file)["services"]

        assert "ports" not in services["worker"]
        assert all("container_name" not in service for service in services.values())
        replicated = {
            name for name, service in services.items() if "replicas" in service.get("deploy", {})
        }
        assert replicated <= {"worker"}

    def test_everything_waits_for_the_migration_and_the_engines(self, compose_file: Path) -> None:
        processes, _ = PROCESSES[compose_file]
        services = _load(compose_file)["services"]

        for name in processes - {"migrate", "flower"}:
            depends_on = services[name]["depends_on"]
            assert depends_on["migrate"] == {"condition": "service_completed_successfully"}, name
            assert depends_on["postgres"] == {"condition": "service_healthy"}, name
            assert depends_on["redis"] == {"condition": "service_healthy"}, name
            assert depends_on["minio-init"] == {"condition": "service_completed_successfully"}
        assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}

    def test_waits_only_on_health_checks_and_one_shots_that_exist(self, compose_file: Path) -> None:
        services = _load(compose_file)["services"]

        for name, service in services.items():
            for target, how in service.get("depends_on", {}).items():
                waited = services[target]
                if how["condition"] == "service_healthy":
                    assert not waited.get("healthcheck", {}).get("disable"), (name, target)
                    assert waited.get("healthcheck", {}).get("test"), (name, target)
                else:
                    assert how["condition"] == "service_completed_successfully", (name, target)
                    assert waited["restart"] == "no", target

    def test_every_long_running_service_has_a_health_check(self, compose_file: Path) -> None:
        services = _load(compose_file)["services"]
        one_shots = {name for name, service in services.items() if service.get("restart") == "no"}

        assert one_shots == {"migrate", "minio-init"}
        for name in set(services) - one_shots:
            assert services[name]["healthcheck"]["test"], name

    def test_redis_keeps_jobs_across_restarts_and_never_evicts_them(
        self, compose_file: Path
    ) -> None:
        redis = _load(compose_file)["services"]["redis"]
        command = redis["command"]
        options = dict(zip(command[1::2], command[2::2], strict=True))

        assert options["--appendonly"] == "yes"
        assert options["--appendfsync"] == "everysec"
        assert options["--maxmemory-policy"] == "noeviction"
        assert any(volume.endswith(":/data") for volume in redis["volumes"])

    def test_postgres_keeps_its_data_in_a_volume(self, compose_file: Path) -> None:
        compose = _load(compose_file)
        [volume] = compose["services"]["postgres"]["volumes"]
        name, target = volume.split(":")

        assert target == "/var/lib/postgresql/data"
        assert name in compose["volumes"]


def test_the_laptop_file_follows_the_development_row() -> None:
    services = _load(LAPTOP)["services"]
    worker = services["worker"]

    assert worker["environment"]["TASKGATE_WORKER__CONCURRENCY"] == "2"
    assert worker["deploy"]["resources"]["limits"] == {"cpus": "1", "memory": "512M"}
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]


class TestStagingCompose:
    def test_has_every_service_of_the_stack(self, services: dict[str, Any]) -> None:
        assert set(services) == TASKGATE_SERVICES | {
            "nginx",
            "postgres",
            "redis",
            "minio",
            "minio-init",
            "prometheus",
            "alertmanager",
            "node-exporter",
            "grafana",
        }

    def test_trusts_request_ids_from_its_own_network_only(self, compose: dict[str, Any]) -> None:
        [subnet] = compose["networks"]["taskgate"]["ipam"]["config"]
        trusted = compose["services"]["api-1"]["environment"]["TASKGATE_API__TRUSTED_PROXIES"]

        assert trusted == f'["{subnet["subnet"]}"]'

    def test_every_variable_without_a_default_is_in_the_env_example(self) -> None:
        required = {
            match.group(1)
            for match in INTERPOLATION.finditer(STAGING.read_text())
            if match.group(2) != "-"
        }

        assert required
        assert required <= set(_env_example())

    def test_runs_three_workers_of_the_staging_row(self, services: dict[str, Any]) -> None:
        worker = services["worker"]

        assert worker["deploy"]["replicas"] == 3
        assert worker["environment"]["TASKGATE_WORKER__CONCURRENCY"] == "4"
        assert worker["deploy"]["resources"]["limits"] == {"cpus": "2", "memory": "1G"}

    def test_three_api_replicas_behind_nginx(self, services: dict[str, Any]) -> None:
        nginx_conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
        upstream = set(re.findall(r"^\s*server (api-\d):8000 ", nginx_conf, re.MULTILINE))

        assert upstream == API_SERVICES
        assert {services[api]["command"][0] for api in API_SERVICES} == {"api"}
        assert all("ports" not in services[api] for api in API_SERVICES)
        assert set(services["nginx"]["depends_on"]) == API_SERVICES

    def test_mounts_only_files_of_the_repository_or_made_by_its_scripts(
        self, services: dict[str, Any], compose: dict[str, Any]
    ) -> None:
        made = {DEPLOY / "nginx" / "tls"}  # deploy/make-cert.sh
        for service in services.values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    path = (DEPLOY / source).resolve()
                    assert path.exists() or path in made, source
        header = "".join(line for line in STAGING.read_text().splitlines() if line.startswith("#"))
        for secret in compose["secrets"].values():  # operators' files, named in the header
            assert secret["file"].startswith("./secrets/")
            assert secret["file"].removeprefix("./secrets/") in header

    def test_prometheus_scrapes_the_apis_and_the_workers_of_this_file(
        self, services: dict[str, Any]
    ) -> None:
        prometheus = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
        jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
        worker_env = services["worker"]["environment"]

        [api_targets] = jobs["taskgate-api"]["static_configs"]
        assert set(api_targets["targets"]) == {f"{api}:8000" for api in API_SERVICES}
        [workers] = jobs["taskgate-worker"]["dns_sd_configs"]
        assert workers["names"] == ["worker"]
        assert str(workers["port"]) == worker_env["TASKGATE_METRICS__WORKER_PORT"]
        assert worker_env["TASKGATE_METRICS__WORKER_HOST"] == "0.0.0.0"  # noqa: S104
        [node] = jobs["node"]["static_configs"]
        assert node["targets"] == ["node-exporter:9100"]

    def test_grafana_loads_the_dashboard_from_where_it_is_mounted(
        self, services: dict[str, Any]
    ) -> None:
        provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "taskgate.yml")
        [dashboards] = provider["providers"]
        mounts = dict(volume.split(":")[:2] for volume in services["grafana"]["volumes"])

        assert mounts["./grafana/taskgate.json"].startswith(dashboards["options"]["path"] + "/")
        assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_env_example_holds_no_secret() -> None:
    secrets = {
        name: value
        for name, value in _env_example().items()
        if any(word in name for word in ("PASSWORD", "SECRET", "PEPPER", "AUTH"))
    }

    assert secrets
    assert set(secrets.values()) == {""}
