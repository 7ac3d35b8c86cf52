"""Benchmarks: the accrual job against a row-by-row loop and the raw-SQL floor, the event
loop's lag while it runs, and the HTTP API under load against plain sync views.

``python -m bench --help`` lists the options; ``docs/benchmarks.md`` explains the results.
Everything runs in a database of its own, created at the start and dropped at the end.
"""
