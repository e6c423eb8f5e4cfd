"""Numbers as people read them."""

from __future__ import annotations

import pytest

from comfywatchman import humanize


@pytest.mark.parametrize(
    ("size", "text"), [(None, "size unknown"), (512, "512 B"), (6_500_000_000, "6.5 GB"), (1_500_000, "1.5 MB")]
)
def test_size_uses_powers_of_1000(size: int | None, text: str) -> None:
    assert humanize.size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (59.4, "59 s"),
        (119, "1 min"),
        (600, "10 min"),
        (3600, "1 h 00 min"),
        (7500, "2 h 05 min"),
        (-3, "0 s"),
    ],
)
def test_duration_picks_the_unit_a_person_reads(seconds: float, text: str) -> None:
    assert humanize.duration(seconds) == text
