"""Mutation testing: change the code in small ways and check that the tests notice.

``uv run python -m tools.mutation MODULE... --tests TEST...`` makes every mutant of the modules,
runs the tests against each in a copy of the project, and reports how many the tests killed.
"""
