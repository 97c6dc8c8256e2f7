""".github/workflows/ against the GitHub workflow schema, what each job runs and when, and
deploy/rollout.sh (what the deploy job runs) with a kubectl that records what it is asked."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.checks import check_jsonschema, load_all_yaml
from tests.support import REPO_ROOT

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
CI = REPO_ROOT / ".github" / "workflows" / "ci.yml"
ROLLOUT = REPO_ROOT / "deploy" / "rollout.sh"
K8S = REPO_ROOT / "k8s"
PLACEHOLDER = "registry.invalid/taskgate:set-by-ci"
ON_MAIN = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
# Records each call (argv, and the manifests it was given on stdin); `wait` answers $WAIT_RC.
KUBECTL = """#!/bin/sh
echo "kubectl $*" >> "$KUBECTL_LOG"
case " $* " in
  *" -f - "*) cat >> "$KUBECTL_LOG"; echo "---end" >> "$KUBECTL_LOG" ;;
  *" wait "*) exit "${WAIT_RC:-0}" ;;
esac
"""


def _ci() -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    loaded: dict[Any, Any] = yaml.safe_load(CI.read_text())
    loaded["on"] = loaded.pop(True)
    return loaded


def _steps(job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _ci()["jobs"][job]["steps"]
    return steps


def _runs(job: str) -> str:
    return "\n".join(step.get("run", "") for step in _steps(job))


class TestWorkflows:
    def test_validate_against_the_github_workflow_schema(self) -> None:
        checked = check_jsonschema("vendor.github-workflows", *WORKFLOWS)

        assert WORKFLOWS == [CI]
        assert checked.returncode == 0, checked.stdout + checked.stderr

    def test_every_push_and_pull_request_runs_make_test_and_pip_audit(self) -> None:
        ci = _ci()

        assert set(ci["on"]) == {"push", "pull_request"}
        assert ci["on"]["push"] is None  # every branch
        assert ".ci/run" in _runs("test")
        assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
        assert "pip_audit" in _runs("audit")
        assert "--require-hashes -r requirements/audit.txt" in _runs("audit")
        assert "--requirement requirements/dev.txt" in _runs("audit")
        assert "pip-audit-allowlist.toml" in _runs("audit")
        for job in ("test", "audit"):
            assert "if" not in ci["jobs"][job], job

    def test_every_push_and_pull_request_runs_the_lowest_versions_allowed(self) -> None:
        job = _ci()["jobs"]["lowest"]
        [python] = [step for step in job["steps"] if "setup-python" in step.get("uses", "")]
        makefile = (REPO_ROOT / "Makefile").read_text()

        assert "if" not in job
        assert python["with"]["python-version"] == "3.11"  # requires-python's lower bound
        assert _runs("lowest").strip() == "make test-lowest"
        assert "--require-hashes -r requirements/lowest.txt" in makefile

    def test_main_builds_the_image_of_the_commit_then_deploys_it_through_production(
        self,
    ) -> None:
        jobs = _ci()["jobs"]
        [build] = [step for step in _steps("image") if "build-push-action" in step.get("uses", "")]

        assert jobs["image"]["if"] == ON_MAIN
        assert set(jobs["image"]["needs"]) == {"test", "audit"}
        assert build["with"]["file"] == "deploy/Dockerfile"
        assert build["with"]["push"] is True
        assert "${GITHUB_SHA}" in _runs("image")
        assert jobs["deploy"]["if"] == ON_MAIN
        assert jobs["deploy"]["needs"] == ["image"]
        assert jobs["deploy"]["environment"]["name"] == "production"
        assert jobs["deploy"]["concurrency"] == {
            "group": "deploy-production",
            "cancel-in-progress": False,
        }
        assert 'deploy/rollout.sh "$IMAGE"' in _runs("deploy")

    def test_hold_no_secret_and_grant_least_permissions(self) -> None:
        text = CI.read_text()

        assert _ci()["permissions"] == {"contents": "read"}
        assert set(re.findall(r"secrets\.([A-Z_]+)", text)) == {"GITHUB_TOKEN", "KUBE_CONFIG"}
        for pattern in (r"gh[pousr]_[A-Za-z0-9]{20,}", r"AKIA[0-9A-Z]{16}", r"-----BEGIN"):
            assert not re.search(pattern, text), pattern
        # Values of expressions reach shell scripts through env, never pasted into them.
        for job in _ci()["jobs"]:
            for step in _steps(job):
                assert "${{" not in step.get("run", ""), (job, step.get("name"))


def _rollout(tmp_path: Path, *, wait_rc: int = 0) -> tuple[int, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(KUBECTL)
    kubectl.chmod(0o755)
    log = tmp_path / "kubectl.log"
    log.touch()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KUBECTL_LOG": str(log),
        "WAIT_RC": str(wait_rc),
    }
    done = subprocess.run(  # noqa: S603 - the project's script
        [str(ROLLOUT), "ghcr.io/acme/taskgate:0123abc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, log.read_text()


class TestRollout:
    def test_migrates_then_applies_everything_with_the_image_and_waits(
        self, tmp_path: Path
    ) -> None:
        code, log = _rollout(tmp_path)

        calls = [line for line in log.splitlines() if line.startswith("kubectl ")]
        assert code == 0
        assert calls[0].startswith("kubectl apply -f ")
        assert calls[0].endswith("00-namespace.yaml -f " + str(K8S / "10-config.yaml"))
        assert (
            calls[1]
            == "kubectl -n taskgate delete job taskgate-migrate --ignore-not-found --wait=true"
        )
        assert calls[2] == "kubectl apply -f -"
        assert calls[3].startswith(
            "kubectl -n taskgate wait --for=condition=complete job/taskgate-migrate"
        )
        assert calls[-3:] == [
            f"kubectl -n taskgate rollout status deployment/taskgate-{name} --timeout={timeout}"
            for name, timeout in (("api", "10m"), ("scheduler", "10m"), ("worker", "30m"))
        ]
        applied = [
            document
            for chunk in log.split("---end")[:-1]
            for document in yaml.safe_load_all(chunk.split("kubectl apply -f -\n", 1)[1])
            if document
        ]
        kinds_by_name = {(doc["kind"], doc["metadata"]["name"]) for doc in applied}
        expected = {
            (doc["kind"], doc["metadata"]["name"])
            for path in sorted(K8S.glob("*.yaml"))[2:]
            for doc in load_all_yaml(path)
        }
        assert kinds_by_name == expected
        assert PLACEHOLDER not in log
        assert (
            log.count("image: ghcr.io/acme/taskgate:0123abc") == 4
        )  # migrate, api, worker, scheduler

    def test_rolls_nothing_out_when_the_migration_fails(self, tmp_path: Path) -> None:
        code, log = _rollout(tmp_path, wait_rc=1)

        assert code == 1
        assert "kind: Deployment" not in log
        assert "rollout status" not in log

    def test_the_manifests_name_the_image_it_replaces(self) -> None:
        assert f"placeholder='{PLACEHOLDER}'" in ROLLOUT.read_text()
        assert {path.name for path in K8S.glob("*.yaml") if PLACEHOLDER in path.read_text()} == {
            "20-migrate.yaml",
            "30-api.yaml",
            "31-worker.yaml",
            "32-scheduler.yaml",
        }


@pytest.mark.parametrize("script", [ROLLOUT, REPO_ROOT / "deploy" / "make-cert.sh"])
def test_scripts_parse_and_are_executable(script: Path) -> None:
    parsed = subprocess.run(  # noqa: S603 - bash -n on the project's script
        ["bash", "-n", str(script)],  # noqa: S607 - bash from PATH
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert parsed.returncode == 0, parsed.stderr
    assert os.access(script, os.X_OK)
