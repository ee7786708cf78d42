"""Helpers the tests import: test data, waiting with a deadline, leak checks, servers.

Fixtures live in `tests/conftest.py`; nothing imports from it.
"""
