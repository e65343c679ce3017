"""The side-by-side benchmark suite: one workload, run against plain Django and each cache.

``benchmarks/run.py`` drives it; see ``benchmarks/README.md``.
"""
