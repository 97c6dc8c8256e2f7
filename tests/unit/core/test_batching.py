"""Group commit: concurrent calls share one run; a lone call is not delayed; errors reach only
the callers of the run that failed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from app.core.batching import GroupCommit, Groups


class Recorder:
    def __init__(self, *, fail_on: int | None = None, gate: asyncio.Event | None = None) -> None:
        self.runs: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = gate

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.runs.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [item * 10 for item in items]


async def test_a_lone_call_runs_alone_at_once() -> None:
    run = Recorder()
    group = GroupCommit(run)

    assert await asyncio.wait_for(group(7), timeout=1) == 70
    assert run.runs == [[7]]


async def test_calls_made_together_share_one_run_each_with_its_own_result() -> None:
    run = Recorder()
    group = GroupCommit(run)

    results = await asyncio.gather(*(group(n) for n in range(5)))

    assert results == [0, 10, 20, 30, 40]
    assert run.runs == [[0, 1, 2, 3, 4]]
    assert (group.runs, group.items) == (1, 5)


async def test_calls_made_while_a_run_is_in_flight_go_in_the_next_one() -> None:
    gate = asyncio.Event()
    run = Recorder(gate=gate)
    group = GroupCommit(run)
    first = asyncio.ensure_future(group(1))
    await asyncio.sleep(0.01)  # the first run is waiting on the gate
    later = [asyncio.ensure_future(group(n)) for n in (2, 3)]
    await asyncio.sleep(0.01)
    gate.set()

    assert await asyncio.gather(first, *later) == [10, 20, 30]
    assert run.runs == [[1], [2, 3]]


async def test_a_run_takes_at_most_max_items() -> None:
    run = Recorder()
    group = GroupCommit(run, max_items=2)

    assert await asyncio.gather(*(group(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert run.runs == [[0, 1], [2, 3], [4]]


async def test_an_error_reaches_the_callers_of_its_run_only() -> None:
    run = Recorder(fail_on=1)
    group = GroupCommit(run, max_items=2)

    outcomes = await asyncio.gather(*(group(n) for n in range(4)), return_exceptions=True)

    assert [type(o).__name__ for o in outcomes[:2]] == ["ValueError", "ValueError"]
    assert outcomes[2:] == [20, 30]
    assert await group(5) == 50  # the group still works afterwards


async def test_a_run_that_gives_the_wrong_number_of_results_fails_its_callers() -> None:
    async def short(items: Sequence[int]) -> list[int]:
        return [1]

    group: GroupCommit[int, int] = GroupCommit(short)

    with pytest.raises(RuntimeError, match="1 results for 2"):
        await asyncio.gather(group(1), group(2))


async def test_a_caller_that_stops_waiting_leaves_the_others_their_results() -> None:
    gate = asyncio.Event()
    run = Recorder(gate=gate)
    group = GroupCommit(run)
    calls = [asyncio.ensure_future(group(n)) for n in (1, 2)]
    await asyncio.sleep(0.01)
    calls[0].cancel()
    gate.set()

    assert await calls[1] == 20
    assert calls[0].cancelled()


async def test_an_exception_given_as_an_item_s_result_reaches_that_caller_only() -> None:
    async def run(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(f"no {item}") if item == 2 else item for item in items]

    group: GroupCommit[int, int] = GroupCommit(run)

    outcomes = await asyncio.gather(group(1), group(2), group(3), return_exceptions=True)

    assert (outcomes[0], outcomes[2]) == (1, 3)
    assert isinstance(outcomes[1], ValueError)


class _Owner:
    """Something a group runs on (a sessionmaker in the app)."""


async def test_groups_are_one_per_owner_and_key_and_run_what_make_gives() -> None:
    made: list[tuple[_Owner, str]] = []

    def make(owner: _Owner, key: str) -> Recorder:
        made.append((owner, key))
        return Recorder()

    groups: Groups[_Owner, str, int, int] = Groups(make, max_items=3)
    first, second = _Owner(), _Owner()

    assert groups(first, "a") is groups(first, "a")
    assert groups(first, "b") is not groups(first, "a")
    assert groups(second, "a") is not groups(first, "a")
    assert made == [(first, "a"), (first, "b"), (second, "a")]
    assert groups(first, "a").max_items == 3
    assert await groups(first, "a")(4) == 40
    assert len(groups.of(first)) == 2
    assert groups.of(_Owner()) == []
