"""Progress: a log line per 10% without a terminal, a tqdm bar on one."""

from __future__ import annotations

import io
import logging

import pytest

from comfywatchman.download.progress import BarProgress, LogProgress, default_factory


def test_log_progress_says_each_tenth_once_with_rate_and_time_left(caplog: pytest.LogCaptureFixture) -> None:
    ticks = iter(float(i) for i in range(100))
    progress = LogProgress("x.safetensors", 1000, 300, clock=lambda: next(ticks))
    caplog.set_level(logging.INFO)
    for _ in range(70):
        progress.update(10)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["40%", "50%", "60%", "70%", "80%", "90%", "100%"]
    assert lines[-1] == "x.safetensors: 100% (1.0 KB of 1.0 KB, 100 B/s, 0 s left)"


def test_a_terminal_gets_a_bar_and_a_pipe_log_lines() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = default_factory(stream)("x.safetensors", 2048, 0)
    assert isinstance(bar, BarProgress)
    bar.update(2048)
    bar.close()
    assert "x.safetensors" in stream.getvalue() and "2.05k" in stream.getvalue()
    assert isinstance(default_factory(io.StringIO())("x", 10, 0), LogProgress)
