"""The scenarios, in the order a run takes them (`--only` picks some by name)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.harness.results import Figure
from benchmarks.harness.scenarios.common import Context
from benchmarks.harness.scenarios.flow import run_drain, run_end_to_end
from benchmarks.harness.scenarios.latency import run_longpoll, run_queue_latency
from benchmarks.harness.scenarios.memory import run_memory
from benchmarks.harness.scenarios.read import run_read
from benchmarks.harness.scenarios.recovery import run_flush, run_recovery
from benchmarks.harness.scenarios.scaling import run_scaling
from benchmarks.harness.scenarios.submit import run_submit, run_submit_rate
from benchmarks.harness.scenarios.webhooks import run_webhooks

Runner = Callable[[Context], tuple[list[Figure], dict[str, Any]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Runner


SCENARIOS = (
    Scenario("submit", "Durable submit, 64 connections", run_submit),
    Scenario("submit_rate", "Submit at a fixed 200 req/s", run_submit_rate),
    Scenario("end_to_end", "End to end: submit → succeeded", run_end_to_end),
    Scenario("drain", "Drain of a preloaded backlog", run_drain),
    Scenario("queue_latency", "Queue latency at 100 tasks/s", run_queue_latency),
    Scenario("longpoll", "Long-poll wake", run_longpoll),
    Scenario("read", "Cached read of a finished task at 200 req/s", run_read),
    Scenario("webhooks", "Webhook fan-out", run_webhooks),
    Scenario("memory", "RSS over many tasks", run_memory),
    Scenario("recovery", "Recovery after kill -9 of every worker", run_recovery),
    Scenario("flush", "Redis flushed with tasks queued", run_flush),
    Scenario("scaling", "Throughput vs worker processes and task duration", run_scaling),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}

__all__ = ["BY_NAME", "SCENARIOS", "Context", "Scenario"]
