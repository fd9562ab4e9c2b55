"""The clock guard's median (``keysyncd.core.clock.median``, written out so ``status`` and
``plan`` start without ``statistics``) answers as ``statistics.median`` does."""

from __future__ import annotations

import random
import statistics

import pytest

from keysyncd.core import clock


@pytest.mark.parametrize(
    "values",
    [[5.0], [1.0, 3.0], [3.0, -1.0, 2.0], [86400.0, 0.5, 1.0, -2.0], [0.0, 0.0], [2, 7, 4, 1]],
)
def test_the_median_is_the_middle_value_or_the_mean_of_the_middle_two(
    values: list[float],
) -> None:
    assert clock.median(values) == statistics.median(values)


def test_the_median_agrees_with_the_standard_library_on_many_readings() -> None:
    draw = random.Random(20)
    for size in range(1, 40):
        values = [draw.uniform(-1e5, 1e5) for _ in range(size)]
        assert clock.median(values) == statistics.median(values)
        assert clock.median(tuple(values)) == statistics.median(values)


def test_the_median_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        clock.median([])


def test_one_clock_far_out_does_not_move_the_judged_skew() -> None:
    check = clock.judge(1e9, None, [0.5, -0.5, 86400.0], max_skew=5.0)
    assert check.skew == 0.5 and check.trusted
