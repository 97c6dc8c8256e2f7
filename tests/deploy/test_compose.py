"""deploy/docker-compose.staging.yml, checked offline: the Compose specification's schema, and
that what it runs, names and waits for exists (settings, commands, health checks, files)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.core.config import Settings
from tests.deploy.checks import check_command, check_jsonschema, is_setting, load_yaml
from tests.support import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
STAGING = DEPLOY / "docker-compose.staging.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
TASKGATE_SERVICES = {"api-1", "api-2", "api-3", "worker", "scheduler", "migrate", "flower"}
API_SERVICES = {"api-1", "api-2", "api-3"}
# ${NAME}, ${NAME:-default}, ${NAME:?error}; `$$` is a literal dollar for the container's shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?]))?[^}]*\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(STAGING)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


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


class TestStagingCompose:
    def test_validates_against_the_compose_specification(self) -> None:
        checked = check_jsonschema("vendor.compose-spec", STAGING)

        assert checked.returncode == 0, checked.stdout + checked.stderr

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

    def test_every_taskgate_variable_is_a_setting(self, services: dict[str, Any]) -> None:
        names = {
            name
            for service in services.values()
            for name in service.get("environment", {})
            if name.startswith("TASKGATE_")
        } | {name for name in _env_example() if name.startswith("TASKGATE_")}
        names -= {"TASKGATE_IMAGE", "TASKGATE_FLOWER_IMAGE", "TASKGATE_S3_BUCKET"}
        names -= {"TASKGATE_PUBLIC_S3_URL"}  # compose's own variables, not the app's

        assert {name for name in names if not is_setting(name)} == set()
        assert "TASKGATE_DATABASE__URL" in names

    @pytest.mark.parametrize("service", sorted(TASKGATE_SERVICES))
    def test_each_process_gets_settings_that_validate(
        self, service: str, services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        filled = {name: value or "s" * 48 for name, value in _env_example().items()}
        for name, value in services[service]["environment"].items():
            monkeypatch.setenv(name, _interpolated(str(value), filled))

        settings = Settings()

        assert settings.env.value == "staging"
        assert settings.database.url.startswith("postgresql+asyncpg://taskgate:")
        assert settings.api.trusted_proxies

    def test_every_variable_without_a_default_is_in_the_env_example(self) -> None:
        required = {
            match.group(1)
            for match in INTERPOLATION.finditer(STAGING.read_text())
            if match.group(2) != "-"
        }

        assert required
        assert required <= set(_env_example())

    @pytest.mark.parametrize("service", sorted(TASKGATE_SERVICES - {"flower"}))
    def test_runs_commands_the_cli_has(self, service: str, services: dict[str, Any]) -> None:
        check_command(services[service]["command"])

    def test_workers_scale_with_no_fixed_name_or_host_port(self, services: dict[str, Any]) -> None:
        worker = services["worker"]

        assert worker["deploy"]["replicas"] == 3
        assert "ports" not in worker
        assert all("container_name" not in service for service in services.values())
        replicated = {
            name for name, service in services.items() if "replicas" in service.get("deploy", {})
        }
        assert replicated == {"worker"}

    def test_three_api_replicas_behind_nginx(self, services: dict[str, Any]) -> None:
        nginx_conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
        upstream = set(re.findall(r"^\s*server (api-\d):8000 ", nginx_conf, re.MULTILINE))

        assert upstream == API_SERVICES
        assert {services[api]["command"][0] for api in API_SERVICES} == {"api"}
        assert all("ports" not in services[api] for api in API_SERVICES)
        assert set(services["nginx"]["depends_on"]) == API_SERVICES

    def test_everything_waits_for_the_migration_and_the_engines(
        self, services: dict[str, Any]
    ) -> None:
        for name in TASKGATE_SERVICES - {"migrate", "flower"}:
            depends_on = services[name]["depends_on"]
            assert depends_on["migrate"] == {"condition": "service_completed_successfully"}, name
            assert depends_on["postgres"] == {"condition": "service_healthy"}, name
            assert depends_on["redis"] == {"condition": "service_healthy"}, name
            assert depends_on["minio-init"] == {"condition": "service_completed_successfully"}

    def test_waits_only_on_health_checks_and_one_shots_that_exist(
        self, services: dict[str, Any]
    ) -> None:
        for name, service in services.items():
            for target, how in service.get("depends_on", {}).items():
                waited = services[target]
                if how["condition"] == "service_healthy":
                    assert not waited.get("healthcheck", {}).get("disable"), (name, target)
                    assert waited.get("healthcheck", {}).get("test"), (name, target)
                else:
                    assert how["condition"] == "service_completed_successfully", (name, target)
                    assert waited["restart"] == "no", target

    def test_every_long_running_service_has_a_health_check(self, services: dict[str, Any]) -> None:
        one_shots = {name for name, service in services.items() if service.get("restart") == "no"}

        assert one_shots == {"migrate", "minio-init"}
        for name in set(services) - one_shots:
            assert services[name]["healthcheck"]["test"], name

    def test_redis_keeps_jobs_across_restarts_and_never_evicts_them(
        self, services: dict[str, Any]
    ) -> None:
        command = services["redis"]["command"]
        options = dict(zip(command[1::2], command[2::2], strict=True))

        assert options["--appendonly"] == "yes"
        assert options["--appendfsync"] == "everysec"
        assert options["--maxmemory-policy"] == "noeviction"
        assert any(volume.endswith(":/data") for volume in services["redis"]["volumes"])

    def test_postgres_keeps_its_data_in_a_volume(self, compose: dict[str, Any]) -> None:
        [volume] = compose["services"]["postgres"]["volumes"]
        name, target = volume.split(":")

        assert target == "/var/lib/postgresql/data"
        assert name in compose["volumes"]

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
