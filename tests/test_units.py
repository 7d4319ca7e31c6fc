"""Sizes read the same wherever SmolChat shows one."""

from __future__ import annotations

import pytest

from smolchat.units import format_bytes, format_two_sizes


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (512, "512 bytes"),
        (999, "999 bytes"),
        (1_000, "1 KB"),
        (12_400, "12 KB"),
        (999_499, "999 KB"),
        (999_500, "1 MB"),
        (95_000_000, "95 MB"),
        (949_600_000, "950 MB"),
        (999_600_000, "1.0 GB"),
        (1_234_000_000, "1.2 GB"),
        (14_200_000_000, "14.2 GB"),
    ],
)
def test_a_size_reads_in_the_largest_unit_that_keeps_it_short(n, shown):
    assert format_bytes(n) == shown


def test_two_sizes_that_round_alike_are_told_apart_in_bytes():
    assert format_two_sizes(1_234_567_890, 1_234_500_000) == ("1,234,567,890 bytes", "1,234,500,000 bytes")
    assert format_two_sizes(3_000_000, 1_000_000) == ("3 MB", "1 MB")
    assert format_two_sizes(5_000, 5_000) == ("5 KB", "5 KB")
