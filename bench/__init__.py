"""Benchmarks: ``python -m bench [--quick] [NAME ...]`` (``make bench``).

Each benchmark measures our figure and a raw baseline in the same run, then prints
one markdown table (also written to bench/results/latest.md). See bench/README.md.
"""
