"""Diagnostics: timestamps on lines that go to a file, repeats folded per stage, nothing folded with --verbose."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from comfywatchman import logsetup, progress

T = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, stderr = root.handlers[:], root.level, sys.stderr
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.stderr = stderr
    logsetup._folding = None
    progress.configure(False)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_every_line_written_to_a_file_gets_a_utc_timestamp() -> None:
    sink = io.StringIO()
    stream = logsetup.TimestampedStream(sink, clock=lambda: T)
    stream.write("first line\nsecond ")
    stream.write("half\n")
    stream.write("")
    stream.write("third\n")
    assert sink.getvalue() == (
        "2027-01-15T08:00:00Z first line\n2027-01-15T08:00:00Z second half\n2027-01-15T08:00:00Z third\n"
    )
    assert not stream.isatty()


def test_configure_stamps_a_pipe_but_not_a_terminal() -> None:
    pipe = io.StringIO()
    logsetup.configure(verbose=False, quiet=False, stream=pipe)
    logging.getLogger("comfywatchman.x").info("hello")
    print("a plain error line", file=sys.stderr)
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 2
    assert all(line[:21].endswith("Z ") and line[4] == "-" for line in lines)
    assert lines[0].endswith(" comfywatchman: hello") and lines[1].endswith(" a plain error line")
    assert not progress.enabled()

    terminal = _Terminal()
    logsetup.configure(verbose=False, quiet=False, stream=terminal)
    logging.getLogger("comfywatchman.x").warning("careful")
    assert terminal.getvalue() == "comfywatchman: WARNING: careful\n"
    assert progress.enabled()
    logsetup.configure(verbose=False, quiet=True, stream=_Terminal())
    assert not progress.enabled()  # --quiet: no bar either


def test_a_stage_folds_repeats_into_one_line_with_a_count_in_first_seen_order() -> None:
    terminal = _Terminal()
    logsetup.configure(verbose=False, quiet=True, stream=terminal)
    log = logging.getLogger("comfywatchman.search.civitai")
    logsetup.begin_stage("search")
    log.warning("civitai: %s: %s", "a.safetensors", "cannot connect to civitai.com")
    logging.getLogger("comfywatchman.other").warning("a different warning")
    for name in ("b.safetensors", "c.safetensors"):
        log.warning("civitai: %s: %s", name, "civitai.com was unreachable earlier this cycle")
    logging.getLogger("comfywatchman.stages.search").info("search: 3 missing files")  # below --quiet's level
    assert terminal.getvalue() == ""  # held until the stage ends
    logsetup.end_stage()
    assert terminal.getvalue().splitlines() == [
        "comfywatchman: WARNING: civitai: a.safetensors: cannot connect to civitai.com (and 2 more like it in the "
        "search stage; --verbose shows each)",
        "comfywatchman: WARNING: a different warning",
    ]
    log.warning("outside a stage: %s", "written at once")
    assert terminal.getvalue().splitlines()[-1] == "comfywatchman: WARNING: outside a stage: written at once"


def test_errors_naming_different_files_fold_by_their_shape() -> None:
    terminal = _Terminal()
    logsetup.configure(verbose=False, quiet=False, stream=terminal)
    log = logging.getLogger("comfywatchman.scheduler")
    logsetup.begin_stage("scan")
    for index in range(40):
        log.error("%s", f"/home/me/ComfyUI/user/default/workflows/w{index}.json: not valid JSON: line {index} column 1")
    log.error("%s", "/home/me/ComfyUI/user/default/workflows/x.png: a PNG without a workflow")
    logsetup.end_stage()
    lines = terminal.getvalue().splitlines()
    assert lines == [
        "comfywatchman: ERROR: /home/me/ComfyUI/user/default/workflows/w0.json: not valid JSON: line 0 column 1 "
        "(and 39 more like it in the scan stage; --verbose shows each)",
        "comfywatchman: ERROR: /home/me/ComfyUI/user/default/workflows/x.png: a PNG without a workflow",
    ]


def test_verbose_folds_nothing_and_names_every_level() -> None:
    terminal = _Terminal()
    logsetup.configure(verbose=True, quiet=False, stream=terminal)
    logsetup.begin_stage("search")
    for name in ("a", "b"):
        logging.getLogger("comfywatchman.x").warning("civitai: %s: unreachable", name)
    logging.getLogger("comfywatchman.x").debug("detail")
    logsetup.end_stage()
    assert terminal.getvalue().splitlines() == [
        "comfywatchman: WARNING: civitai: a: unreachable",
        "comfywatchman: WARNING: civitai: b: unreachable",
        "comfywatchman: DEBUG: detail",
    ]


def test_shape_masks_paths_names_and_numbers() -> None:
    assert logsetup.shape("C:\\wf\\a.json: line 3") == logsetup.shape("C:\\other\\b.json: line 41")
    assert logsetup.shape("x.safetensors: missing") != logsetup.shape("x.safetensors: found")


def test_held_records_are_written_when_logging_shuts_down() -> None:
    terminal = _Terminal()
    logsetup.configure(verbose=False, quiet=False, stream=terminal)
    logsetup.begin_stage("scan")
    logging.getLogger("comfywatchman.x").warning("left held by a stage that never ended")
    assert logsetup._folding is not None
    logsetup._folding.flush()
    assert "left held" in terminal.getvalue()
