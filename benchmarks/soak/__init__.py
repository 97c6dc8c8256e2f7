"""The soak: mixed load on the harness's stack for minutes, a worker SIGKILLed every few, then
checks that no task is stuck or lost and that memory and latency do not grow
(`python -m benchmarks.soak`, `make soak`, `make soak-short`)."""
