"""What `/metrics` serves: the samples of every process sharing the host's metrics directory,
summed, and what is read at scrape time (queue depths from the broker, the workers' busy ratio).
Nothing here runs per request or per job."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core import metrics
from app.core.multiprocess import ENV, LIVE_GAUGE_PREFIXES, remove_dead

log = logging.getLogger(__name__)


async def scrape(redis: Redis, queues: Sequence[str], *, timeout_s: float) -> bytes:
    """The text exposition of the host's metrics; a broker that does not answer within
    `timeout_s` leaves the queue depths out (the rest is served as ever)."""
    depths = await queue_depths(redis, queues, timeout_s=timeout_s)
    return generate_latest(Snapshot(depths))


def serve_host_metrics(host: str, port: int) -> None:
    """Serve the host's metrics over HTTP from a thread of this process (a worker on a host
    without an API process); the queue depths are the API's to read."""
    start_http_server(port, addr=host, registry=Snapshot())


async def queue_depths(
    redis: Redis, queues: Sequence[str], *, timeout_s: float
) -> dict[str, int] | None:
    """LLEN of each queue, one round trip; None when the broker did not answer in time."""

    async def read() -> list[int]:
        async with redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue)
            return [int(length) for length in await pipe.execute()]

    try:
        lengths = await asyncio.wait_for(read(), timeout=timeout_s)
    except (TimeoutError, RedisError, OSError) as exc:
        log.warning("queue depths not read for /metrics", extra={"error": type(exc).__name__})
        return None
    return dict(zip(queues, lengths, strict=True))


class Snapshot(Collector):
    """One scrape: the families the processes wrote, every declared family (without samples
    until something records one), the busy ratio, and `depths` when they were read."""

    def __init__(self, depths: Mapping[str, int] | None = None) -> None:
        self.depths = depths

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for family in _written():
            families[family.name] = family
        for declared in metrics.FAMILIES:
            for family in declared.describe():
                families.setdefault(family.name, family)
        yield from families.values()
        yield _busy_ratio(families)
        depth = GaugeMetricFamily(
            "taskgate_queue_depth", metrics.QUEUE_DEPTH_HELP, labels=["queue"]
        )
        for queue, length in (self.depths or {}).items():
            depth.add_metric([queue], length)
        yield depth


def _written() -> Iterable[Metric]:
    directory = os.environ.get(ENV)
    if not directory or not Path(directory).is_dir():  # one process (`uvicorn --factory …`)
        return REGISTRY.collect()
    # A worker killed with SIGKILL did not take its live gauges (its running jobs) with it.
    remove_dead(Path(directory), prefixes=LIVE_GAUGE_PREFIXES)
    collector: Collector = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
    return collector.collect()


def _busy_ratio(families: Mapping[str, Metric]) -> Metric:
    ratio = GaugeMetricFamily(
        "taskgate_worker_busy_ratio",
        "Share of this host's worker job slots running a job at scrape time "
        "(taskgate_worker_jobs_running / taskgate_worker_job_slots).",
    )
    slots = _total(families.get("taskgate_worker_job_slots"))
    if slots > 0:  # no worker on this host: no ratio
        ratio.add_metric([], min(1.0, _total(families.get("taskgate_worker_jobs_running")) / slots))
    return ratio


def _total(family: Metric | None) -> float:
    return sum(sample.value for sample in family.samples) if family is not None else 0.0
