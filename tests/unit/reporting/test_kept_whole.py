"""What the kept contributions add up to (``kept_whole``): counted in and out again it is what gathering them
gives, it reads back as it was dumped, and report_history.json made of its entries' texts is, byte for byte,
the file ``artifacts.write`` writes of the same history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from comfywatchman import artifacts
from comfywatchman.reporting import kept_index, kept_whole, markdown, status_report
from comfywatchman.reporting.answers import Answers

NOW = "2026-12-01T04:00:00+00:00"


def contribution(name: str, readiness: str, files: list[list[Any]], nodes: list[list[str]]) -> list[Any]:
    """Return a kept contribution (``kept_index.contribution``'s form) of workflow ``name``."""
    resolved = readiness in ("ready", "resolvable")
    blockers = ["download"] if files else []
    return [name, f"/w/{name}", readiness, resolved, None if resolved else "2026-11-30T00:00:00+00:00", None,
            files, {n[0]: 0 for n in nodes}, nodes, blockers, False, None]  # fmt: skip


def file(folder: str | None, name: str, status: str = "NOT_SEARCHED") -> list[Any]:
    return [folder, name, status, "", None, name.lower()]


KEPT = [
    contribution("a.json", "needs_review", [file("loras", "A.safetensors"), file(None, "x.bin", "FOUND")], []),
    contribution("b.json", "blocked", [file("loras", "A.safetensors")], [["install_pack:p", "PackNode", "missing"]]),
    contribution("c.json", "ready", [], [["enable_pack:q", "Other", "disabled"]]),
    contribution("d.json", "resolvable", [file("vae", "v.safetensors", "FOUND")], []),
]
DIRS = {"loras": ["/c/models/loras"], "": ["/c/models"], "vae": ["/c/models/vae"]}


def gathered(kept: list[list[Any]]) -> status_report.Aggregate:
    aggregate = status_report.Aggregate(Answers())
    for one in kept:
        kept_index.gather(aggregate, one, DIRS, [{"node": {}}], NOW, set(), set())
    return aggregate


def test_the_whole_fills_an_aggregate_as_gathering_every_contribution_does() -> None:
    whole = kept_whole.Whole.empty(status_report.READINESS)
    for one in [*KEPT, KEPT[0]]:
        whole.add(one)
    whole.add(KEPT[0], -1)  # counted in twice, out once: still there
    made = status_report.Aggregate(Answers())
    whole.fill(made, DIRS, map(kept_whole.row_of, KEPT))
    expected = gathered(KEPT)
    assert made.counts == expected.counts and made.missing_models == expected.missing_models
    assert made.missing_nodes == expected.missing_nodes and made.model_dirs == expected.model_dirs
    assert (made.has_downloads, made.has_disabled) == (expected.has_downloads, expected.has_disabled) == (True, True)
    assert made.rows == expected.rows and all(isinstance(row, markdown.Row) for row in made.rows)
    # Taken out again, what only those workflows had is gone with them.
    whole.add(KEPT[2], -1)
    whole.add(KEPT[3], -1)
    whole.add(KEPT[0], -1)
    assert whole.found == 0 and whole.disabled == 0 and set(whole.folders) == {"loras"}
    assert whole.counts == gathered([KEPT[1]]).counts
    with pytest.raises(ValueError, match="was not in it"):
        whole.add(KEPT[3], -1)


def test_the_whole_reads_back_as_it_was_dumped_and_a_foreign_one_is_refused() -> None:
    whole = kept_whole.Whole.empty(status_report.READINESS)
    for one in KEPT:
        whole.add(one)
    rows = [kept_whole.row_of(one) for one in KEPT]
    entries = [kept_whole.entry_of(one, kept_index.history_missing(one)) for one in KEPT]
    spans = [(15 + 100 * n, 98) for n in range(len(KEPT))]
    actions = (2000, [120, 80, 95])
    loaded = kept_whole.load(whole.dump(rows, entries, spans, actions), len(KEPT))
    assert vars(loaded[0]) == vars(whole) and loaded[1:] == (rows, entries, spans, actions)
    assert kept_whole.load(whole.dump(rows, entries, spans, None), len(KEPT))[4] is None  # lines not told apart
    with pytest.raises(ValueError):
        kept_whole.load(whole.dump(rows, entries, spans, actions), len(KEPT) + 1)


@pytest.mark.parametrize(
    "paths",
    [
        ["/w/b.json", "/w/a.json", "/w/é.json", '/w/z"quote\\back.json', "/w/A.json", "/w/\u00e9\u4e2d.json"],
        ["/w/same.json", "/w/other.json", "/w/same.json"],  # a path seen twice keeps its last entry
    ],
)
def test_history_text_is_what_artifacts_write_writes(tmp_path: Path, paths: list[str]) -> None:
    entries, history = [], {}
    for number, path in enumerate(paths):
        one = contribution(f"w{number}.json", "ready" if number % 2 else "blocked", [file("loras", f"{number}.x")], [])
        one[1] = path
        missing = kept_index.history_missing(one)
        entries.append(kept_whole.entry_of(one, missing))
        history[path] = {"last_resolved_at": NOW if one[3] else one[4], "missing": missing}
    written = tmp_path / "report_history.json"
    artifacts.write(written, {"workflows": history}, "report_history", indent=None)
    assert written.read_bytes() == kept_whole.history_text(entries, NOW) + b"\n"
    assert orjson.loads(kept_whole.history_text(entries, NOW)) == {"workflows": history}
