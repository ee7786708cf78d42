"""The policy of `autodep.priority`: when the server yields the cores to its workers."""

from __future__ import annotations

import pytest

from autodep.priority import overloaded


@pytest.mark.parametrize(
    ("refused", "expected"),
    [
        ([], False),
        ([5], False),  # one period: a burst
        ([5, 0], False),
        ([0, 5], False),
        ([3, 1], True),  # refusals in two periods in a row
        ([0, 3, 1], True),
    ],
)
def test_the_server_yields_after_two_periods_in_a_row_with_refusals(refused, expected):
    assert overloaded(refused) is expected
