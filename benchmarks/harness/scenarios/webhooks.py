"""Webhook fan-out: a task's `finished_at` to the receiver's arrival, with 1 and 20 endpoints."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmarks.harness.procs import BenchError, wait_until
from benchmarks.harness.receiver import Receiver
from benchmarks.harness.results import Figure, summary
from benchmarks.harness.scenarios.common import ECHO, Context, submit_count
from benchmarks.harness.stack import Project


def _finished_at(ctx: Context, project: Project) -> dict[str, float]:
    rows = ctx.tg.pg.fetch(
        "SELECT id::text AS id, extract(epoch FROM finished_at)::float8 AS finished"
        " FROM tasks WHERE project_id = $1::uuid AND finished_at IS NOT NULL",
        project.id,
    )
    return {row["id"]: float(row["finished"]) for row in rows}


def run_webhooks(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    tasks = ctx.size(10, 100)
    fan_outs = (1, 20)
    with Receiver() as receiver:
        projects: dict[int, Project] = {}
        for endpoints in fan_outs:
            project = ctx.project(f"webhooks-{endpoints}")
            ctx.tg.add_webhooks(
                project, [receiver.url(f"p{endpoints}-e{i}") for i in range(endpoints)]
            )
            projects[endpoints] = project
        for endpoints in fan_outs:
            submit_count(ctx, projects[endpoints], ECHO, tasks, concurrency=4)
        expected = tasks * sum(fan_outs)

        def arrived() -> bool:
            ctx.tg.check_alive()
            return receiver.count() >= expected

        wait_until(
            arrived,
            what=f"{expected} webhook deliveries",
            timeout_s=ctx.seconds(60, 300),
            interval_s=0.1,
        )
        arrivals = list(receiver.arrivals)

    figures: list[Figure] = []
    data: dict[str, Any] = {"tasks_per_project": tasks}
    for endpoints in fan_outs:
        finished = _finished_at(ctx, projects[endpoints])
        prefix = f"p{endpoints}-"
        mine = [a for a in arrivals if a.endpoint.startswith(prefix) and a.task_id in finished]
        if len(mine) < tasks * endpoints:
            raise BenchError(f"{len(mine)} of {tasks * endpoints} deliveries matched their task")
        each = [(a.at - finished[a.task_id]) * 1000 for a in mine]
        last: dict[str, float] = defaultdict(float)
        for a in mine:
            last[a.task_id] = max(last[a.task_id], (a.at - finished[a.task_id]) * 1000)
        per_delivery, per_task = summary(each), summary(list(last.values()))
        data[f"{endpoints}_endpoints"] = {"delivery_ms": per_delivery, "last_of_task_ms": per_task}
        word = "endpoint" if endpoints == 1 else "endpoints"
        figures.append(
            Figure(
                f"webhooks.{endpoints}.p50",
                f"webhook: finished → received, {endpoints} {word}, p50",
                per_delivery["p50"],
                "ms",
            )
        )
        figures.append(
            Figure(
                f"webhooks.{endpoints}.p99",
                f"webhook, {endpoints} {word}, p99",
                per_delivery["p99"],
                "ms",
            )
        )
        if endpoints > 1:
            figures.append(
                Figure(
                    f"webhooks.{endpoints}.last_p50",
                    f"webhook, all {endpoints} received (last of a task), p50",
                    per_task["p50"],
                    "ms",
                )
            )
    return figures, data
