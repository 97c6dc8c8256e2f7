"""k8s/: every manifest against Kubernetes' own schemas (kubernetes-validate --strict, offline),
and what the schemas cannot see: settings, commands, probes, selectors and policies that fit."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from pydantic import ValidationError

from app.core.config import PLACEHOLDER_SECRET, Settings
from tests.deploy.checks import VENV_BIN, check_command, is_setting, load_all_yaml
from tests.support import REPO_ROOT

K8S = REPO_ROOT / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
IMAGE = "registry.invalid/taskgate:set-by-ci"  # what CI replaces with the commit's image
# The oldest Kubernetes the manifests are for (the preStop `sleep` action), and the newest known.
VERSIONS = ["1.31.0", "1.37.0"]


def _resources() -> list[dict[str, Any]]:
    return [document for path in MANIFESTS for document in load_all_yaml(path)]


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {
        resource["metadata"]["name"]: resource
        for resource in _resources()
        if resource["kind"] == kind
    }


def _pod_specs() -> dict[str, dict[str, Any]]:
    """The pod template of every Deployment and Job, by the workload's name."""
    workloads = {**_of_kind("Deployment"), **_of_kind("Job")}
    return {name: workload["spec"]["template"] for name, workload in workloads.items()}


def _container(name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod_specs()[name]["spec"]["containers"]
    [container] = containers
    return container


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) selects `labels`."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _secret_keys() -> set[str]:
    """The keys of the Secret that k8s/10-config.yaml says how to create."""
    return set(
        re.findall(r"--from-literal=(TASKGATE_[A-Z0-9_]+)=", (K8S / "10-config.yaml").read_text())
    )


class TestSchemas:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_every_manifest_validates_strictly(self, version: str) -> None:
        validated = subprocess.run(  # noqa: S603 - the venv's kubernetes-validate
            [
                str(VENV_BIN / "kubernetes-validate"),
                "--strict",
                "-k",
                version,
                *map(str, MANIFESTS),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert validated.returncode == 0, validated.stdout + validated.stderr
        assert validated.stdout.count(" passed for resource ") == len(_resources())

    def test_everything_is_in_the_taskgate_namespace(self) -> None:
        for resource in _resources():
            if resource["kind"] != "Namespace":
                assert resource["metadata"]["namespace"] == "taskgate", resource["metadata"]


class TestSettingsAndCommands:
    def test_every_taskgate_variable_is_a_setting(self) -> None:
        names = set(_of_kind("ConfigMap")["taskgate-config"]["data"]) | _secret_keys()
        for name in _pod_specs():
            names |= {env["name"] for env in _container(name).get("env", [])}

        assert "TASKGATE_DATABASE__URL" in names
        assert {name for name in names if not is_setting(name)} == set()

    @pytest.mark.parametrize("workload", sorted(_pod_specs()))
    def test_each_pod_gets_settings_that_validate(
        self, workload: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        container = _container(workload)
        refs = {
            source.get("configMapRef", source.get("secretRef", {}))["name"]
            for source in container["envFrom"]
        }
        assert refs == {"taskgate-config", "taskgate-secrets"}
        for name, value in _of_kind("ConfigMap")["taskgate-config"]["data"].items():
            monkeypatch.setenv(name, value)
        for name in _secret_keys():
            monkeypatch.setenv(name, "s" * 48)
        monkeypatch.setenv(
            "TASKGATE_DATABASE__URL", "postgresql+asyncpg://taskgate@pgbouncer/taskgate"
        )
        for env in container.get("env", []):
            monkeypatch.setenv(env["name"], env["value"])

        settings = Settings()

        assert settings.env.value == "production"
        # Behind PgBouncer's transaction pool (tests/deploy/test_pgbouncer.py).
        assert settings.database.statement_cache_size == 0
        assert settings.database.listen_url is not None

    @pytest.mark.parametrize("workload", sorted(_pod_specs()))
    @pytest.mark.parametrize(
        "secret",
        [
            "TASKGATE_SECURITY__JWT_SECRET",
            "TASKGATE_SECURITY__API_KEY_PEPPER",
            "TASKGATE_WEBHOOKS__SECRET_KEY",
        ],
    )
    def test_each_pod_refuses_a_secret_left_at_the_placeholder(
        self, workload: str, secret: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        container = _container(workload)
        for name, value in _of_kind("ConfigMap")["taskgate-config"]["data"].items():
            monkeypatch.setenv(name, value)
        for name in _secret_keys():
            monkeypatch.setenv(name, "s" * 48)
        for env in container.get("env", []):
            monkeypatch.setenv(env["name"], env["value"])
        monkeypatch.setenv(secret, PLACEHOLDER_SECRET)

        with pytest.raises(ValidationError, match=f"{secret} must be set outside local/test"):
            Settings()

    @pytest.mark.parametrize("workload", sorted(_pod_specs()))
    def test_runs_a_command_of_the_cli_from_the_one_image(self, workload: str) -> None:
        container = _container(workload)

        assert container["image"] == IMAGE
        check_command(container["args"])


class TestPods:
    @pytest.mark.parametrize("workload", sorted(_pod_specs()))
    def test_run_unprivileged_on_a_read_only_root_with_a_writable_tmp(self, workload: str) -> None:
        pod = _pod_specs()[workload]["spec"]
        container = _container(workload)

        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 1000
        assert pod["automountServiceAccountToken"] is False
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        [mount] = container["volumeMounts"]
        assert mount["mountPath"] == "/tmp"  # noqa: S108 - the pod's own emptyDir
        [volume] = pod["volumes"]
        assert volume["name"] == mount["name"]
        assert "emptyDir" in volume
        metrics_dir = _of_kind("ConfigMap")["taskgate-config"]["data"]["TASKGATE_METRICS__DIR"]
        assert metrics_dir.startswith("/tmp/")  # noqa: S108 - the pod's own emptyDir

    @pytest.mark.parametrize("workload", sorted(_pod_specs()))
    def test_have_requests_and_limits(self, workload: str) -> None:
        resources = _container(workload)["resources"]

        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory"}, kind
        assert resources["requests"]["memory"] == resources["limits"]["memory"] or workload in {
            "taskgate-migrate",
            "taskgate-scheduler",
        }

    def test_workers_follow_the_production_row_and_get_a_warm_shutdown(self) -> None:
        worker = _container("taskgate-worker")
        env = {item["name"]: item["value"] for item in worker["env"]}

        assert env["TASKGATE_WORKER__CONCURRENCY"] == "16"
        assert worker["resources"]["limits"] == {"cpu": "4", "memory": "4Gi"}
        assert _pod_specs()["taskgate-worker"]["spec"]["terminationGracePeriodSeconds"] >= 300

    def test_the_api_is_probed_on_its_health_routes(self) -> None:
        api = _container("taskgate-api")
        [port] = api["ports"]

        assert api["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": port["name"]}
        assert api["readinessProbe"]["httpGet"] == {
            "path": "/health/ready?degraded_ok=true",
            "port": port["name"],
        }
        assert port["containerPort"] == 8000

    def test_the_worker_serves_its_metrics_where_prometheus_is_told_and_allowed(self) -> None:
        pod = _pod_specs()["taskgate-worker"]
        worker = _container("taskgate-worker")
        env = {item["name"]: item["value"] for item in worker["env"]}
        policy = _of_kind("NetworkPolicy")["taskgate-worker"]["spec"]

        assert (
            env["TASKGATE_METRICS__WORKER_PORT"]
            == pod["metadata"]["annotations"]["prometheus.io/port"]
        )
        assert env["TASKGATE_METRICS__WORKER_HOST"] == "0.0.0.0"  # noqa: S104 - in the pod
        [rule] = policy["ingress"]
        assert [port["port"] for port in rule["ports"]] == [
            int(env["TASKGATE_METRICS__WORKER_PORT"])
        ]


class TestRollouts:
    @pytest.mark.parametrize("deployment", sorted(_of_kind("Deployment")))
    def test_never_take_a_pod_away_before_its_successor_is_ready(self, deployment: str) -> None:
        spec = _of_kind("Deployment")[deployment]["spec"]

        assert spec["strategy"]["type"] == "RollingUpdate"
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert _selects(spec["selector"], spec["template"]["metadata"]["labels"])

    def test_every_deployment_has_a_disruption_budget_and_api_and_workers_autoscale(self) -> None:
        deployments = _of_kind("Deployment")
        budgets = _of_kind("PodDisruptionBudget").values()
        autoscalers = _of_kind("HorizontalPodAutoscaler").values()

        for name, deployment in deployments.items():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert [b for b in budgets if _selects(b["spec"]["selector"], labels)], name
        scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in autoscalers}
        assert scaled == {"taskgate-api", "taskgate-worker"}
        assert scaled <= set(deployments)

    def test_the_migration_job_runs_once_to_completion(self) -> None:
        job = _of_kind("Job")["taskgate-migrate"]["spec"]

        assert job["template"]["spec"]["restartPolicy"] == "Never"
        assert _container("taskgate-migrate")["args"] == ["migrate"]


class TestTraffic:
    def test_the_ingress_reaches_the_api_over_tls_and_never_its_metrics(self) -> None:
        ingress = _of_kind("Ingress")["taskgate"]["spec"]
        service = _of_kind("Service")["taskgate-api"]["spec"]
        api_labels = _pod_specs()["taskgate-api"]["metadata"]["labels"]
        [tls] = ingress["tls"]
        [rule] = ingress["rules"]

        assert rule["host"] in tls["hosts"]
        assert _selects({"matchLabels": service["selector"]}, api_labels)
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend == {
                "name": "taskgate-api",
                "port": {"name": service["ports"][0]["name"]},
            }
            assert not "/metrics".startswith(path["path"]), path["path"]  # "/" would route it

    def test_nothing_gets_in_unless_a_policy_allows_it(self) -> None:
        policies = _of_kind("NetworkPolicy")
        deny = policies["default-deny-ingress"]["spec"]

        assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
        api_policy = policies["taskgate-api"]["spec"]
        [rule] = api_policy["ingress"]
        namespaces = {
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for peer in rule["from"]
        }
        assert namespaces == {"ingress-nginx", "monitoring"}
        assert _selects(
            api_policy["podSelector"], _pod_specs()["taskgate-api"]["metadata"]["labels"]
        )
        worker_labels = _pod_specs()["taskgate-worker"]["metadata"]["labels"]
        assert _selects(policies["taskgate-worker"]["spec"]["podSelector"], worker_labels)

    @pytest.mark.parametrize(
        ("policy", "engine"),
        [
            ("postgres-from-taskgate", "pgbouncer"),
            ("postgres-from-taskgate", "postgres"),
            ("redis-from-taskgate", "redis"),
        ],
    )
    def test_engines_accept_taskgate_pods_only(self, policy: str, engine: str) -> None:
        spec = _of_kind("NetworkPolicy")[policy]["spec"]
        [rule] = spec["ingress"]

        assert _selects(spec["podSelector"], {"app.kubernetes.io/name": engine})
        for name, template in _pod_specs().items():
            assert any(
                _selects(peer["podSelector"], template["metadata"]["labels"])
                for peer in rule["from"]
            ), name
        stranger = {"app.kubernetes.io/name": "something-else"}
        assert not any(_selects(peer["podSelector"], stranger) for peer in rule["from"])
        assert all("namespaceSelector" not in peer for peer in rule["from"])


def test_kubectl_apply_creates_the_namespace_and_the_config_before_the_pods() -> None:
    """`kubectl apply -f k8s/` takes the directory's files in name order."""
    kinds = [
        [document["kind"] for document in load_all_yaml(path)]
        for path in sorted(K8S.iterdir())
        if path.suffix in {".yaml", ".yml", ".json"}
    ]

    assert kinds[0] == ["Namespace"]
    assert kinds[1] == ["ConfigMap"]
    assert all(kind not in {"Namespace", "ConfigMap"} for later in kinds[2:] for kind in later)
