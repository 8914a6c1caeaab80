"""Zako benchmarks: `python -m bench.run` (or `make bench`) prints the comparison tables.

Every figure is measured against baselines taken in the same run on the same machine;
see bench/README.md for what is measured and the run quoted in the README.
"""
