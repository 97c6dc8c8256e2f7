"""deploy/: the alert rules and their unit tests, Prometheus's and Alertmanager's configurations,
and the Grafana dashboard, checked by the tools that load them (promtool, amtool)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from app.core.exposition import Snapshot
from tests.debian import amtool, promtool
from tests.metrics import FAMILIES, promql_metric_names, series_names
from tests.support import REPO_ROOT

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "taskgate.json"
ALERTS = {
    "TaskgateHighErrorRate",
    "TaskgateHighLatencyP99",
    "TaskgateQueueBacklog",
    "TaskgateWorkersSaturated",
    "TaskgateDiskAlmostFull",
}
# node-exporter's series the rules and the dashboard use.
NODE_EXPORTER = {"node_filesystem_avail_bytes", "node_filesystem_size_bytes"}


def _run(*argv: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the installed promtool and amtool
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(PROMETHEUS / "alerts.yml")["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def known_series() -> set[str]:
    """Every series /metrics can expose (its declared families), and node-exporter's."""
    exposition = generate_latest(Snapshot({"default": 0})).decode()
    return series_names(exposition) | NODE_EXPORTER


class TestAlertRules:
    def test_pass_promtool_check_rules(self) -> None:
        checked = _run(promtool(), "check", "rules", "alerts.yml")

        assert checked.returncode == 0, checked.stdout + checked.stderr

    def test_pass_their_unit_tests(self) -> None:
        tested = _run(promtool(), "test", "rules", "alerts_test.yml")

        assert tested.returncode == 0, tested.stdout + tested.stderr

    def test_each_alert_has_a_test_where_it_fires_and_one_where_it_does_not(self) -> None:
        cases = [
            case
            for test in _yaml(PROMETHEUS / "alerts_test.yml")["tests"]
            for case in test["alert_rule_test"]
        ]

        assert {rule["alert"] for rule in _rules()} == ALERTS
        for alert in ALERTS:
            outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == alert}
            assert outcomes == {True, False}, alert

    def test_select_only_series_that_exist(self, known_series: set[str]) -> None:
        for rule in _rules():
            assert promql_metric_names(rule["expr"]) <= known_series, rule["alert"]


class TestPrometheusConfig:
    def test_passes_promtool_check_config_and_scrapes_api_workers_and_nodes(self) -> None:
        checked = _run(promtool(), "check", "config", "prometheus.yml")
        config = _yaml(PROMETHEUS / "prometheus.yml")

        assert checked.returncode == 0, checked.stdout + checked.stderr
        jobs = {job["job_name"] for job in config["scrape_configs"]}
        assert jobs == {"taskgate-api", "taskgate-worker", "node"}
        assert config["rule_files"] == ["alerts.yml"]


class TestAlertmanagerConfig:
    def test_passes_amtool_check_config(self) -> None:
        checked = _run(amtool(), "check-config", "alertmanager.yml")

        assert checked.returncode == 0, checked.stdout + checked.stderr

    @pytest.mark.parametrize("alert", sorted(ALERTS))
    def test_routes_every_alert_to_slack_and_pagerduty(self, alert: str) -> None:
        routed = _run(
            amtool(),
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            f"alertname={alert}",
            "severity=critical",
        )

        assert routed.returncode == 0, routed.stdout + routed.stderr
        assert routed.stdout.split() == ["slack-ops-alerts,pagerduty"]

    def test_reads_the_slack_url_and_the_pagerduty_key_from_files(self) -> None:
        receivers = {
            receiver["name"]: receiver
            for receiver in _yaml(PROMETHEUS / "alertmanager.yml")["receivers"]
        }

        [slack] = receivers["slack-ops-alerts"]["slack_configs"]
        [pagerduty] = receivers["pagerduty"]["pagerduty_configs"]
        assert slack["channel"] == "#ops-alerts"
        assert slack["api_url_file"].startswith("/")
        assert pagerduty["routing_key_file"].startswith("/")
        assert {"api_url", "routing_key", "service_key"}.isdisjoint({*slack, *pagerduty})


class TestGrafanaDashboard:
    def test_every_expression_selects_only_series_that_exist(self, known_series: set[str]) -> None:
        dashboard = json.loads(DASHBOARD.read_text())

        expressions = [
            target["expr"] for panel in dashboard["panels"] for target in panel["targets"]
        ]
        assert expressions
        for expr in expressions:
            assert promql_metric_names(expr) <= known_series, expr

    def test_shows_every_family(self) -> None:
        dashboard = json.loads(DASHBOARD.read_text())

        used = set().union(
            *(
                promql_metric_names(target["expr"])
                for panel in dashboard["panels"]
                for target in panel["targets"]
            )
        )
        for family, kind in FAMILIES.items():
            shown = {family, f"{family}_bucket"} if kind == "histogram" else {family}
            assert used & shown, family
