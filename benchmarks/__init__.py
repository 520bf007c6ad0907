"""pysciml benchmarks: side-by-side runs against peers, outside the package and outside the tests.

Run ``python -m benchmarks --help``. Results (markdown tables, PNG plots) go to ``benchmarks/results/``.
"""
