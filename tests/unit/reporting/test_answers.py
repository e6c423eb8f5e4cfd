"""The search's answers as the report keeps them: compact, shared when equal, and kept between cycles while
search.json's results are unchanged (a new generated_at or cycle id changes nothing)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts
from comfywatchman.reporting import answers
from comfywatchman.stages import search_digests


def result(name: str, status: str = "NOT_SEARCHED", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "loras",
        "status": status,
        "source": "search",
        "evidence": "none",
        "url": None,
        "sha256": None,
        "size": None,
        "reason": "qwen: offline",
        "candidates": [],
        "details": {},
        "attempts": [],
        "workflows": [],
        **fields,
    }


def search_json(path: Path, results: list[dict[str, Any]], cycle_id: str = "c1") -> None:
    counts = dict.fromkeys(("FOUND", "NEEDS_ACCESS", "UNCERTAIN", "NOT_FOUND", "ERROR", "INVALID_FILENAME"), 0)
    document = {
        "cycle_id": cycle_id,
        "generated_at": "2026-11-30T12:00:00+00:00",
        "offline": True,
        "backend_order": ["qwen"],
        "results": results,
        "counts": {**counts, "NOT_SEARCHED": len(results)},
        "requests": {},
        "cache_hits": 0,
    }
    artifacts.write(path, document, "search")


RESULTS = [
    result("a.safetensors"),
    result("B.safetensors"),
    result("c.safetensors", "FOUND", url="https://huggingface.co/o/r/resolve/main/c.safetensors", size=5)
    | {"details": {"huggingface": {"gated": True}}},
]


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make ``answers`` note the number of each search.json line it parses from now on; return that list."""
    parsed: list[int] = []
    real = answers._parser

    def counted(where: Path) -> Any:
        parse = real(where)

        def counting(line: bytes, number: int) -> Any:
            parsed.append(number)
            return parse(line, number)

        return counting

    monkeypatch.setattr(answers, "_parser", counted)
    return parsed


def test_equal_answers_are_kept_once_and_a_gated_file_digests_apart() -> None:
    found = answers.from_results(RESULTS)
    assert found.get(("loras", "a.safetensors")) is found.get(("loras", "b.safetensors"))  # one shared answer
    assert found.gated == frozenset({("loras", "c.safetensors")})
    assert found.digest(("loras", "a.safetensors")) == found.digest(("loras", "b.safetensors"))
    assert found.digest(("loras", "c.safetensors")).endswith(b"g")
    assert found.digest(("loras", "missing")) == b"-"
    keys = [("loras", "c.safetensors"), ("loras", "missing"), ("loras", "a.safetensors")]
    assert answers.from_results(RESULTS).digests(keys) == b"".join(map(found.digest, keys))  # asked for first


def test_kept_answers_stand_while_the_results_are_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    search_json(path, RESULTS)
    first = answers.load(path, kept)
    assert kept.is_file()
    search_json(path, RESULTS, cycle_id="c2")  # written again by a later cycle, the same answers

    def unread(_path: Path) -> None:
        raise AssertionError("search.json read again")

    with monkeypatch.context() as patched:
        patched.setattr(answers, "_results", unread)
        again = answers.load(path, kept)
    assert (again.results, again.gated, again.uncertain, again.offline) == (
        first.results,
        first.gated,
        first.uncertain,
        first.offline,
    )
    assert all(again.digest(k) == first.digest(k) for k in first.results)

    search_json(path, [*RESULTS[:2], result("c.safetensors", "NOT_FOUND")])
    changed = answers.load(path, kept)
    assert changed.results[("loras", "c.safetensors")]["status"] == "NOT_FOUND"
    kept.write_bytes(kept.read_bytes()[:-20])  # torn: read search.json again
    assert answers.load(path, kept).results == changed.results


def search_lines(path: Path, results: list[dict[str, Any]], cycle_id: str = "c1") -> None:
    """Write search.json as the search stage does: one result per line."""
    counts = dict.fromkeys(("FOUND", "NEEDS_ACCESS", "UNCERTAIN", "NOT_FOUND", "ERROR", "INVALID_FILENAME"), 0)
    head = {
        "cycle_id": cycle_id,
        "generated_at": "2026-11-30T12:00:00+00:00",
        "offline": True,
        "backend_order": ["qwen"],
        "results": [],
        "counts": {**counts, "NOT_SEARCHED": len(results)},
        "requests": {},
        "cache_hits": 0,
    }
    texts = [artifacts.part_text(r, "search", "result", "test") for r in results]
    artifacts.write_assembled(path, head, "results", texts, "search")


def same(found: answers.Answers, expected: answers.Answers) -> None:
    assert (found.results, found.gated, found.uncertain, found.offline) == (
        expected.results,
        expected.gated,
        expected.uncertain,
        expected.offline,
    )
    assert {k: found.digest(k) for k in found.results} == {k: expected.digest(k) for k in expected.results}


def test_changed_results_parse_only_their_lines_and_answer_as_a_full_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    first = [*RESULTS, result("d.safetensors", "UNCERTAIN"), result("a.safetensors", "NOT_FOUND")]
    search_lines(path, first)
    same(answers.load(path, kept), answers.from_results(first, offline=True))

    # One result changed (another answer, now gated) and one added; the duplicate key's last answer still wins.
    changed = result("B.safetensors", "FOUND", url="https://huggingface.co/o/r/resolve/main/B.safetensors", size=7)
    changed["details"] = {"huggingface": {"gated": True}}
    now = [first[0], changed, *first[2:], result("e.safetensors", "UNCERTAIN")]
    search_lines(path, now, cycle_id="c2")
    parsed = count_parses(monkeypatch)
    found = answers.load(path, kept)
    assert parsed == [3, 7]  # the lines of the changed and the added result (the list starts on line 2)
    same(found, answers.from_results(now, offline=True))
    assert found.uncertain == 2

    # A torn kept file costs a full read, never a wrong answer.
    search_lines(path, first, cycle_id="c3")
    kept.write_bytes(kept.read_bytes()[:-30])
    parsed.clear()
    same(answers.load(path, kept), answers.from_results(first, offline=True))
    assert len(parsed) == len(first)


def test_a_torn_search_json_names_the_file(tmp_path: Path) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    search_lines(path, RESULTS)
    answers.load(path, kept)
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([*lines[:2], lines[2][:-9], *lines[3:]]))
    with pytest.raises(artifacts.ArtifactError, match=r"search\.json.*line 3"):
        answers.load(path, kept)


def recorded_search(path: Path, results: list[dict[str, Any]], cycle_id: str = "c1") -> None:
    """Write search.json as the search stage does, with its record of the lines' digests (``search_digests``)."""
    search_lines(path, results, cycle_id)
    lines = path.read_bytes().split(b"\n")[1 : len(results) + 1]
    search_digests.save(path, [search_digests.line_digest(line.removesuffix(b",")) for line in lines])


def test_with_the_search_record_only_new_lines_are_read_and_the_answers_are_a_full_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    first = [*RESULTS, result("d.safetensors", "UNCERTAIN"), result("e.safetensors"), result("f.safetensors")]
    recorded_search(path, first)
    made, fresh = answers.load(path, kept), answers.from_results(first, offline=True)
    same(made, fresh)
    assert len(made._table) == len(fresh._table) == 3  # equal answers kept once (a, B, e, f share one)

    parsed = count_parses(monkeypatch)
    # One result changed (a new answer, gated), one gone (the only UNCERTAIN one), one added at the end.
    changed = result("B.safetensors", "FOUND", url="https://huggingface.co/o/r/resolve/main/B.safetensors", size=7)
    changed["details"] = {"huggingface": {"gated": True}}
    now = [first[0], changed, first[2], first[4], first[5], result("g.safetensors", "NEEDS_ACCESS")]
    recorded_search(path, now, cycle_id="c2")
    found = answers.load(path, kept)
    assert parsed == [3, 7]  # the changed line and the added one (the list starts on line 2)
    same(found, answers.from_results(now, offline=True))
    assert found.uncertain == 0
    assert found.changed == {("loras", "b.safetensors"), ("loras", "d.safetensors"), ("loras", "g.safetensors")}

    # The same answers kept again: search.json as it was is not read.
    parsed.clear()
    assert answers.load(path, kept).changed == frozenset()
    assert parsed == []

    # A torn kept file costs a full read, never a wrong answer.
    recorded_search(path, first, cycle_id="c3")
    kept.write_bytes(kept.read_bytes()[:-30])
    same(answers.load(path, kept), answers.from_results(first, offline=True))
    assert len(parsed) == len(first)


def test_a_record_that_does_not_match_its_lines_is_not_trusted(tmp_path: Path) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    recorded_search(path, RESULTS)
    answers.load(path, kept)
    now = [RESULTS[0], result("B.safetensors", "NOT_FOUND"), RESULTS[2]]
    recorded_search(path, now, cycle_id="c2")
    # The record claims the changed line is the first one (the lines' digests swapped): the line read there is
    # not the one it names, so every line is read and hashed.
    record = search_digests.load(path)
    assert record is not None
    record[0], record[1] = record[1], record[0]
    search_digests.save(path, record)
    same(answers.load(path, kept), answers.from_results(now, offline=True))


def test_the_mark_is_the_same_with_or_without_the_search_record(tmp_path: Path) -> None:
    path = tmp_path / "search.json"
    recorded_search(path, RESULTS)
    with_record = answers.mark(path)
    search_digests.record_path(path).unlink()
    answers._RECORD.clear()
    assert answers.mark(path) == with_record
    search_lines(path, RESULTS, cycle_id="c2")  # written again: another time and cycle, the same answers
    assert answers.mark(path) == with_record
    search_lines(path, RESULTS[:2], cycle_id="c3")
    assert answers.mark(path) != with_record


def test_sized_answers_are_the_found_ones_with_a_size() -> None:
    found = answers.from_results(
        [
            *RESULTS,
            result("d.safetensors", "FOUND", url="https://example.com/d.safetensors"),  # no size
            result("e.safetensors", "UNCERTAIN", size=9),  # a size, not FOUND
            result("F.safetensors", "FOUND", url="https://example.com/f.safetensors", size=11),
        ]
    )
    assert found.sized() == {("loras", "c.safetensors"): 5, ("loras", "f.safetensors"): 11}
    brute = {k: r["size"] for k, r in found.results.items() if r["status"] == "FOUND" and r.get("size")}
    assert found.sized() == brute


def test_a_kept_file_of_another_format_is_made_again(tmp_path: Path) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    recorded_search(path, RESULTS)
    mark = answers.mark(path)
    assert mark is not None
    # The layout an earlier version wrote: the mark, then the answers as JSON (not this format's tag).
    kept.write_bytes(mark + b"\n" + b'{"format":2,"table":[],"lines":[],"uncertain":0}')
    same(answers.load(path, kept), answers.from_results(RESULTS, offline=True))
    assert kept.read_bytes().startswith(answers._KEPT_TAG + b"\n")


@pytest.mark.parametrize("seed", range(12))
def test_kept_answers_after_edits_anywhere_are_a_full_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    statuses = ["NOT_SEARCHED", "UNCERTAIN", "NOT_FOUND"]
    now = [result(f"f{n:03}.safetensors", rng.choice(statuses)) for n in range(40)]
    recorded_search(path, now)
    answers.load(path, kept)

    def unread(*_args: Any) -> None:
        raise AssertionError("every line read: the kept answers and the record should have served")

    monkeypatch.setattr(answers, "_from_lines", unread)
    for cycle in range(3):
        for _ in range(rng.randint(1, 4)):  # a result changed, added or gone, at the ends or anywhere
            at = rng.choice([0, len(now) - 1, rng.randrange(len(now))])
            edit = rng.choice(["change", "add", "drop"])
            if edit == "change":
                now[at] = result(now[at]["name"], rng.choice(statuses), reason=f"edit {cycle}")
            elif edit == "add":
                now.insert(at, result(f"g{cycle}{at:03}.safetensors", rng.choice(statuses)))
            elif len(now) > 1:
                del now[at]
        recorded_search(path, now, cycle_id=f"c{cycle + 2}")
        found = answers.load(path, kept)
        same(found, answers.from_results(now, offline=True))
        assert found.uncertain == sum(r["status"] == "UNCERTAIN" for r in now)


@pytest.mark.parametrize("first_change", [0, 1, 511, 512, 513, 1500, 2999, None])
def test_same_lines_counts_the_digests_alike_up_to_the_first_change(first_change: int | None) -> None:
    old = [f"{n:032x}" for n in range(3000)]
    new = list(old)
    if first_change is not None:
        new[first_change] = "changed"
    assert answers._same_lines(old, new) == (3000 if first_change is None else first_change)
    assert answers._same_lines(old, new[:1700]) == min(1700, 3000 if first_change is None else first_change)


def candidate(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "source": "civitai",
        "name": name,
        "url": f"https://civitai.com/models/{name}",
        "evidence": "similar_name",
        "reason": "a similar name",
        "sha256": None,
        "size": None,
        "details": {},
        **fields,
    }


ACCESS = {"page": "https://huggingface.co/o/gated", "token": "HF_TOKEN", "why": "a gated repository"}
# The answer every file no offline source knows gets offline (``search.OfflineBlank``): one object, without
# name, type and workflows, which the search adds from each query.
BLANK = {k: v for k, v in result("-").items() if k not in ("name", "type", "workflows")}
# Each answer the report shows differently, in search.json's order; None: the blank, for the name given.
VARIED: list[tuple[str, dict[str, Any] | None]] = [
    ("a.safetensors", None),
    ("f.safetensors", result("f.safetensors", "FOUND", url="https://x.test/f", size=5, candidates=[candidate("f")])),
    ("b.safetensors", None),
    ("u.safetensors", result("u.safetensors", "UNCERTAIN", candidates=[candidate("u1"), candidate("u2", size=9)])),
    ("n.safetensors", result("n.safetensors", "NEEDS_ACCESS", url="https://x.test/n", details={"access": ACCESS})),
    ("m.safetensors", result("m.safetensors", "NOT_FOUND", reason="nowhere")),
    ("g.safetensors", result("g.safetensors", "FOUND", url="https://x.test/g", size=7, details={"gated": True})),
    ("h.safetensors", result("h.safetensors", "FOUND", url="https://x.test/h", details={"huggingface": {"gated": 1}})),
    ("../bad.safetensors", result("../bad.safetensors", "INVALID_FILENAME", source="scan", reason="a path")),
    ("u2.safetensors", result("u2.safetensors", "UNCERTAIN", candidates=[candidate("u1"), candidate("u2", size=9)])),
    ("sub/Q.safetensors", result("q.safetensors")),  # the query's name is not the result's
    ("A.safetensors", result("A.safetensors", "NOT_FOUND", reason="nowhere")),  # a's key again: this one wins
    ("é.safetensors", None),  # a name of more bytes than characters
]


def varied() -> list[dict[str, Any]]:
    """The results of ``VARIED``, as search.json holds them."""
    return [
        item if item is not None else {**BLANK, "name": name, "type": "loras", "workflows": ["w.json"]}
        for name, item in VARIED
    ]


def handed_search(path: Path, results: list[dict[str, Any]] | None = None) -> bool:
    """Write search.json and its record as the search does, handing the report the answers of ``results`` (by
    default ``varied()``) as the search gathers them (the blank ones of ``VARIED`` by ``add_same``). Return
    whether they were handed over."""
    results = results or varied()
    recorded_search(path, results)
    handed = answers.Handed()
    names = [name for name, _ in VARIED] if results == varied() else [r["name"] for r in results]
    blank = [item is None for _, item in VARIED] if results == varied() else [False] * len(results)
    for item, name, same_answer in zip(results, names, blank, strict=True):
        if same_answer:
            handed.add_same(BLANK)
        else:
            handed.add(item, item["type"], name)
    lines = [line.removesuffix(b",") for line in path.read_bytes().split(b"\n")[1 : len(results) + 1]]
    queries = [answers.key("loras", name) for name in names]
    return answers.hand_over(
        path,
        handed,
        queries,
        [r["status"] for r in results],
        [search_digests.line_digest(line) for line in lines],
        [len(line) for line in lines],
        True,
        None,
    )


def parsed_again(path: Path, tmp_path: Path) -> tuple[answers.Answers, bytes]:
    """Return the answers the report makes of the search.json at ``path`` by parsing every line (a copy of it,
    alone in a folder), and the kept file it writes of them."""
    alone = tmp_path / "alone"
    alone.mkdir(exist_ok=True)
    (alone / "search.json").write_bytes(path.read_bytes())
    made = answers.load(alone / "search.json", alone / answers.KEPT)
    return made, (alone / answers.KEPT).read_bytes()


def test_the_answers_the_search_hands_over_are_what_parsing_search_json_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    results = varied()
    assert handed_search(path)
    parsed = count_parses(monkeypatch)
    found = answers.load(path, kept)
    assert parsed == []  # no line of search.json parsed
    by_parsing, kept_by_parsing = parsed_again(path, tmp_path)
    assert len(parsed) == len(results)
    same(found, by_parsing)
    same(found, answers.from_results(results, offline=True))
    assert found.gated == {("loras", "g.safetensors"), ("loras", "h.safetensors")}
    assert found.uncertain == 2
    assert found.get(("loras", "a.safetensors"))["status"] == "NOT_FOUND"  # type: ignore[index]
    assert found.get(("loras", "q.safetensors")) is not None  # kept under the result's own name
    # Every column the report keeps is the one a parse makes (the same order of answers, lines' digests and
    # lengths, the same mark): a later report takes up from either alike.
    handed_kept, parsed_kept = answers._read_kept(kept), answers._read_kept(tmp_path / "alone" / answers.KEPT)
    assert handed_kept is not None and parsed_kept is not None and kept_by_parsing
    assert handed_kept.mark == parsed_kept.mark == answers.mark(path)
    assert vars(handed_kept) == vars(parsed_kept)

    # A later search.json with one answer changed: only its line is parsed, from the answers handed over.
    parsed.clear()
    now = [*results[:4], result("n.safetensors", "NOT_FOUND"), *results[5:]]
    recorded_search(path, now, cycle_id="c2")
    changed = answers.load(path, kept)
    assert parsed == [6]
    same(changed, answers.from_results(now, offline=True))
    assert changed.changed == {("loras", "n.safetensors")}


@pytest.mark.parametrize("damage", ["torn", "edited", "foreign", "of another search.json"])
def test_a_handed_file_that_is_torn_foreign_or_stale_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    results = varied()
    assert handed_search(path)
    now = results
    if damage == "torn":
        kept.write_bytes(kept.read_bytes()[:-25])
    elif damage == "edited":
        body = bytearray(kept.read_bytes())
        body[-40] ^= 1
        kept.write_bytes(bytes(body))
    elif damage == "foreign":
        kept.write_bytes(b"report-answers-0/another\n" + kept.read_bytes().partition(b"\n")[2])
    else:  # the search wrote another search.json and was stopped before handing its answers over
        now = [result("m.safetensors", "FOUND", url="https://x.test/m", size=3), *results[1:]]
        recorded_search(path, now, cycle_id="c2")
    parsed = count_parses(monkeypatch)
    found = answers.load(path, kept)
    same(found, answers.from_results(now, offline=True))
    # A damaged file is no help: every line is parsed; one of an earlier search.json serves the lines alike.
    assert parsed == ([2] if damage == "of another search.json" else list(range(2, len(now) + 2)))


def test_nothing_is_handed_over_that_a_parse_would_not_give(tmp_path: Path) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    recorded_search(path, RESULTS)
    lines = [line.removesuffix(b",") for line in path.read_bytes().split(b"\n")[1:4]]
    digests, sizes = [search_digests.line_digest(line) for line in lines], [len(line) for line in lines]
    queries, statuses = [answers.key(r["type"], r["name"]) for r in RESULTS], [r["status"] for r in RESULTS]

    def hand(items: list[dict[str, Any]]) -> bool:
        handed = answers.Handed()
        for item in items:
            handed.add(item, item.get("type"), item.get("name", ""))
        return answers.hand_over(path, handed, queries, statuses, digests, sizes, True, None)

    assert not hand(RESULTS[:2])  # a result missing
    assert not hand([*RESULTS[:2], {**RESULTS[2], "size": 2**70}])  # an answer JSON cannot hold as a parse gives it
    assert not hand([*RESULTS[:2], {"status": "FOUND"}])  # not a result
    assert not kept.exists()
    recorded_search(path, [])  # no result: nothing to hand over
    assert not answers.hand_over(path, answers.Handed(), [], [], [], [], True, None)
    assert not kept.exists()
    recorded_search(path, RESULTS)
    assert hand(RESULTS)
    same(answers.load(path, kept), answers.from_results(RESULTS, offline=True))
