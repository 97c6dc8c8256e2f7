"""Built-in task types: `echo`, `sleep`, `cpu.primes`, `fail`."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.tasktypes.base import TaskContext, TaskError, TaskType


class EchoInput(BaseModel):
    model_config = ConfigDict(extra="allow")


async def echo(data: EchoInput, _context: TaskContext) -> dict[str, Any]:
    return data.model_dump()


class SleepInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=3600, description="How long to sleep.")


async def sleep(data: SleepInput, context: TaskContext) -> dict[str, Any]:
    remaining = data.seconds
    step = 0.1
    while remaining > 0:
        context.raise_if_stopping()
        await asyncio.sleep(min(step, remaining))
        remaining -= step
        if data.seconds:
            context.report_progress(1 - max(remaining, 0) / data.seconds)
    return {"slept": data.seconds}


class PrimesInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=0, le=200_000_000, description="Count the primes below n.")


def count_primes(data: PrimesInput, context: TaskContext) -> dict[str, Any]:
    """Segmented sieve of Eratosthenes: real CPU work in bounded memory, with stop points."""
    n = data.n
    if n < 3:
        return {"n": n, "count": 0}
    limit = math.isqrt(n - 1)
    base = bytearray([1]) * (limit + 1)
    base[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit) + 1):
        if base[i]:
            base[i * i :: i] = bytes(len(range(i * i, limit + 1, i)))
    small_primes = [i for i in range(2, limit + 1) if base[i]]
    count = 0
    segment = 1 << 20
    for low in range(2, n, segment):
        context.raise_if_stopping()
        high = min(low + segment, n)
        sieve = bytearray([1]) * (high - low)
        for p in small_primes:
            if p * p >= high:
                break
            start = max(p * p, (low + p - 1) // p * p)
            sieve[start - low :: p] = bytes(len(range(start, high, p)))
        count += sieve.count(1)
        context.report_progress((high - 2) / (n - 2))
    return {"n": n, "count": count}


class FailInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field("failed on purpose", max_length=500)
    retryable: bool = Field(True, description="Whether the failure should be retried.")


async def fail(data: FailInput, _context: TaskContext) -> None:
    raise TaskError(data.message, type="fail", retryable=data.retryable)


BUILTIN_TYPES = (
    TaskType(
        name="echo",
        description="Return the input unchanged.",
        input_model=EchoInput,
        handler=echo,
        default_timeout_s=60,
    ),
    TaskType(
        name="sleep",
        description="Sleep for `seconds` (0-3600), reporting progress; stops promptly on cancel.",
        input_model=SleepInput,
        handler=sleep,
        default_timeout_s=3700,
    ),
    TaskType(
        name="cpu.primes",
        description="Count the primes below `n` with a segmented sieve (CPU-bound work).",
        input_model=PrimesInput,
        handler=count_primes,
        default_timeout_s=600,
    ),
    TaskType(
        name="fail",
        description="Always fail with `message`; retried when `retryable` (for testing retries).",
        input_model=FailInput,
        handler=fail,
        default_timeout_s=60,
    ),
)
