"""The benchmark harness: taskgate and its peers on the same engines, in the same run.

`python -m benchmarks.run [--quick] [--only scenario,...]`; see docs/benchmarks.md.
"""
