"""The soak's own judgement: the receiver's signature check and the memory and latency bounds."""

from __future__ import annotations

import pytest

from app.webhooks.signing import new_secret, sign
from benchmarks.harness.receiver import verify
from benchmarks.soak.__main__ import _parse
from benchmarks.soak.checks import SHORT_SLACK_SCALE, latency_checks, memory_checks
from benchmarks.soak.load import Plan, Record

NOW = 1_800_000_000
BODY = b'{"type":"task.succeeded","data":{"id":"t"}}'


def _headers(secret: str, *, timestamp: int = NOW, body: bytes = BODY) -> dict[str, str]:
    signature = sign(secret, message_id="msg_1", timestamp=timestamp, body=body)
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,bm90IGl0 {signature}",
    }


class TestVerify:
    def test_accepts_taskgates_signature_among_others(self) -> None:
        secret = new_secret()

        assert verify(secret, _headers(secret), BODY, now=NOW + 10)

    def test_refuses_another_secret_a_changed_body_or_an_old_timestamp(self) -> None:
        secret = new_secret()

        assert not verify(new_secret(), _headers(secret), BODY, now=NOW)
        assert not verify(secret, _headers(secret), BODY + b" ", now=NOW)
        assert not verify(secret, _headers(secret), BODY, now=NOW + 301)
        assert not verify(secret, {}, BODY, now=NOW)


def _record_with_rss(values: list[float]) -> Record:
    record = Record()
    record.samples = [
        {"at": float(i), "api_mib": value, "steady_worker_mib": 100.0, "victim_worker_mib": 0.0}
        for i, value in enumerate(values)
    ]
    return record


class TestMemoryChecks:
    def test_flat_memory_passes_and_growth_past_the_bound_fails(self) -> None:
        plan = Plan(seconds=30, kill_every_s=10)

        flat = memory_checks(_record_with_rss([200.0] * 31), plan, warmup_s=0)
        grown = memory_checks(_record_with_rss([200.0] * 10 + [230.0] * 21), plan, warmup_s=0)

        assert [check.passed for check in flat] == [True, True]
        assert [check.passed for check in grown] == [False, True]

    def test_below_eight_mib_passes_whatever_the_percentage(self) -> None:
        plan = Plan(seconds=30, kill_every_s=10)

        [api, _] = memory_checks(_record_with_rss([40.0] * 10 + [47.0] * 21), plan, warmup_s=0)

        assert api.passed


class TestLatencyChecks:
    @pytest.mark.parametrize(("late_ms", "passed"), [(12.0, True), (40.0, False)])
    def test_the_last_third_is_held_to_the_first(self, late_ms: float, passed: bool) -> None:
        record = Record()
        for i in range(300):
            ms = 10.0 if i < 200 else late_ms
            record.requests += [("submit", i / 10, ms, 202), ("read", i / 10, 5.0, 200)]

        submit, read = latency_checks(record, Plan(seconds=30, kill_every_s=10), warmup_s=0)

        assert submit.passed is passed
        assert read.passed

    @pytest.mark.parametrize(("late_ms", "passed"), [(31.0, True), (150.0, False)])
    def test_the_short_mode_allows_a_kill_sized_bump_not_gross_growth(
        self, late_ms: float, passed: bool
    ) -> None:
        record = Record()
        for i in range(300):
            ms = 13.0 if i < 200 else late_ms
            record.requests += [("submit", i / 10, 5.0, 202), ("read", i / 10, ms, 200)]
        plan = Plan(seconds=30, kill_every_s=10)

        _, read = latency_checks(record, plan, warmup_s=0, slack_scale=SHORT_SLACK_SCALE)
        _, strict = latency_checks(record, plan, warmup_s=0)

        assert read.passed is passed
        assert not strict.passed


class TestArgs:
    def test_the_short_mode_kills_a_worker_within_its_run(self) -> None:
        args = _parse(["--short"])

        assert args.mode == "short"
        assert args.plan.kill_every_s < args.plan.seconds - 1

    @pytest.mark.parametrize(
        ("argv", "mode"),
        [
            ([], "full"),
            (["--minutes", "10"], "custom"),
            (["--rate", "4"], "custom"),
            (["--set", "TASKGATE_TASKS__LEASE_S=10"], "custom"),
        ],
    )
    def test_only_the_default_run_writes_the_results_of_record(
        self, argv: list[str], mode: str
    ) -> None:
        assert _parse(argv).mode == mode

    def test_a_kill_interval_longer_than_the_run_is_a_usage_error(self) -> None:
        with pytest.raises(SystemExit):
            _parse(["--minutes", "1", "--kill-every", "120"])
