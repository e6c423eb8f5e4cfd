"""Progress bars: drawn by tqdm when enabled (a terminal), items handed through untouched when not."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import pytest

from comfywatchman import progress


@pytest.fixture(autouse=True)
def _disabled_afterwards() -> Iterator[None]:
    yield
    progress.configure(False)


def test_disabled_track_hands_items_through_and_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress.configure(False)
    assert list(progress.track(iter(range(5)), 5, "scan")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""


def test_enabled_track_draws_a_labelled_bar_and_closes_it_at_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    progress.configure(True)
    items = progress.track(iter(range(3)), 3, "scan", "workflow")
    taken = [next(items) for _ in range(3)]  # as the scan does: exactly total items, never exhausted
    assert taken == [0, 1, 2]
    assert not progress.active()  # closed at the total, not when the iterator is collected
    drawn = screen.getvalue()
    assert "scan:" in drawn and "/3 " in drawn and "workflow" in drawn  # tqdm redraws at most every 0.1 s


def test_write_goes_above_an_active_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    progress.configure(True)
    items = progress.track(iter(range(2)), 2, "search")
    next(items)
    assert progress.active()
    progress.write("comfywatchman: a line", screen)
    next(items)
    assert "comfywatchman: a line\n" in screen.getvalue()
    assert not progress.active()
