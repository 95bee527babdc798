"""Side-by-side benchmarks of ticketbench: `python -m benchmarks [NAME ...] [--quick]`.

One module per benchmark (core, training, search, density, segmentation), each a
`run(session)` that measures its ratios with `benchmarks.harness`; `__main__` runs them
and writes the report. Not tests: `make bench` runs them, `tests/test_benchmarks.py`
smoke-tests the harness.
"""
