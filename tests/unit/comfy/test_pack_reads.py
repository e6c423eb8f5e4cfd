"""Kept pack reads (state/pack_reads.json): an unchanged pack takes its kept read, and the custom nodes cache is
the same with and without them, whatever changed in the packs."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from comfywatchman import cache_manager
from comfywatchman.comfy import pack_reads
from comfywatchman.comfy.pack_reads import PackReads

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
BASE_NS = 1_700_000_000 * 10**9  # every file of these installs is given an mtime from here on, a second apart
LATER_NS = BASE_NS + 10**6 * 10**9  # the reads happen long after: every read may be kept


class Install:
    """A ComfyUI folder whose files get distinct, known mtimes (the test's clock, not the machine's)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.custom = root / "custom_nodes"
        self.tick = 0

    def write(self, relative: str, text: str) -> Path:
        path = self.custom / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.tick += 1
        os.utime(path, ns=(BASE_NS + self.tick * 10**9, BASE_NS + self.tick * 10**9))
        return path


def _install(tmp_path: Path) -> Install:
    install = Install(tmp_path / "ComfyUI")
    install.write("Alpha/__init__.py", "from .nodes import M\nNODE_CLASS_MAPPINGS = {'A1': 1, **M}\n")
    install.write("Alpha/nodes.py", "M = {'A2': 2}\n")
    install.write("Alpha/pyproject.toml", '[project]\nname = "alpha"\nversion = "1.0.0"\n')
    install.write("Alpha/.git/config", '[remote "origin"]\n\turl = https://example.org/alpha.git\n')
    install.write("Beta/__init__.py", "NODE_CLASS_MAPPINGS = {'B1': 1}\n")
    install.write("single.py", "NODE_CLASS_MAPPINGS = {'S1': 1}\n")
    install.write("Gamma.disabled/__init__.py", "NODE_CLASS_MAPPINGS = {'G1': 1}\n")
    return install


def _with_kept(install: Install, state: Path, clock_ns: int = LATER_NS) -> tuple[dict[str, Any], PackReads, bool]:
    """Return (the nodes cache built with the kept reads, the store, whether the store was written)."""
    kept = PackReads(state / "pack_reads.json", clock=lambda: clock_ns).load()
    document = cache_manager.build_nodes_cache(install.root, NOW, kept)
    return document, kept, kept.save()


def _same_as_fresh(install: Install, state: Path) -> tuple[dict[str, Any], PackReads, bool]:
    document, kept, written = _with_kept(install, state)
    assert document == cache_manager.build_nodes_cache(install.root, NOW)
    return document, kept, written


def _types(document: dict[str, Any]) -> dict[str, list[str]]:
    return {p["folder"]: p["node_types"] for p in document["packs"]}


def test_the_cache_is_the_same_with_kept_reads_through_every_kind_of_change(tmp_path: Path) -> None:
    install, state = _install(tmp_path), tmp_path / "state"
    first, kept, written = _same_as_fresh(install, state)
    assert written and len(kept.packs) == 4
    assert _types(first)["Alpha"] == ["A1", "A2"]

    # Nothing changed: every pack takes its kept read, and the file is left alone.
    before = (state / "pack_reads.json").stat().st_mtime_ns
    _, kept, written = _same_as_fresh(install, state)
    assert not written and (state / "pack_reads.json").stat().st_mtime_ns == before

    install.write("Alpha/nodes.py", "M = {'A2': 2, 'A3': 3}\n")  # edited in place
    document, _, written = _same_as_fresh(install, state)
    assert written and _types(document)["Alpha"] == ["A1", "A2", "A3"]

    install.write("Beta/more.py", "NODE_CLASS_MAPPINGS = {'B2': 2}\n")  # a module added
    assert _types(_same_as_fresh(install, state)[0])["Beta"] == ["B1", "B2"]

    (install.custom / "Beta").rename(install.custom / "Beta.disabled")  # disabled, then enabled again
    document = _same_as_fresh(install, state)[0]
    assert [(p["folder"], p["enabled"]) for p in document["packs"] if p["name"] == "Beta"] == [("Beta.disabled", False)]
    (install.custom / "Beta.disabled").rename(install.custom / "Beta")
    assert _types(_same_as_fresh(install, state)[0])["Beta"] == ["B1", "B2"]

    install.write("Alpha/pyproject.toml", '[project]\nname = "alpha"\nversion = "1.0.1"\n')  # version bumped
    document = _same_as_fresh(install, state)[0]
    assert [p["version"] for p in document["packs"] if p["name"] == "Alpha"] == ["1.0.1"]

    install.write("Alpha/.git/config", '[remote "origin"]\n\turl = https://example.org/moved.git\n')
    document = _same_as_fresh(install, state)[0]
    assert [p["git_remote"] for p in document["packs"] if p["name"] == "Alpha"] == ["https://example.org/moved.git"]

    install.write("Gamma.disabled/broken.py", "NODE_CLASS_MAPPINGS = {\n")  # a broken module
    document = _same_as_fresh(install, state)[0]
    [gamma] = [p for p in document["packs"] if p["name"] == "Gamma"]
    assert gamma["node_types"] == ["G1"] and "cannot parse" in gamma["problems"][0]
    _, kept, written = _same_as_fresh(install, state)  # the problem is kept with the read
    assert not written

    install.write("single.py", "NODE_CLASS_MAPPINGS = {'S1': 1, 'S2': 2}\n")  # a one-file pack edited
    assert _types(_same_as_fresh(install, state)[0])["single.py"] == ["S1", "S2"]

    (install.custom / "Alpha" / "pyproject.toml").unlink()  # a file the read depends on removed
    assert [p["version"] for p in _same_as_fresh(install, state)[0]["packs"] if p["name"] == "Alpha"] == [None]

    (install.custom / "single.py").unlink()  # a pack removed: its read is dropped
    _, kept, written = _same_as_fresh(install, state)
    assert written and not any(path.endswith("single.py") for path in kept.packs)


def test_an_unchanged_fingerprint_takes_the_kept_read_without_reading_the_pack(tmp_path: Path) -> None:
    install, state = _install(tmp_path), tmp_path / "state"
    _with_kept(install, state)
    module = install.custom / "Beta" / "__init__.py"
    stat = module.stat()
    module.write_text("NODE_CLASS_MAPPINGS = {'XY': 1}\n", encoding="utf-8")  # same size, mtime put back
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _types(_with_kept(install, state)[0])["Beta"] == ["B1"]
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # one nanosecond later: read again
    assert _types(_with_kept(install, state)[0])["Beta"] == ["XY"]


def test_a_pack_modified_close_to_its_read_is_read_again_next_cycle(tmp_path: Path) -> None:
    install, state = _install(tmp_path), tmp_path / "state"
    racy = BASE_NS + install.tick * 10**9 + pack_reads.RACY_NS  # the newest file is within the window
    _, kept, written = _with_kept(install, state, clock_ns=racy)
    # The file is written (it was missing) but keeps only the packs whose files are all older than the window.
    assert written and not any(path.endswith("Gamma.disabled") for path in kept.packs) and len(kept.packs) == 3
    _, kept, written = _with_kept(install, state, clock_ns=racy + 1)
    assert written and len(kept.packs) == 4


def test_a_missing_broken_or_foreign_file_means_every_pack_is_read(tmp_path: Path) -> None:
    install, state = _install(tmp_path), tmp_path / "state"
    fresh = cache_manager.build_nodes_cache(install.root, NOW)
    state.mkdir()
    store = state / "pack_reads.json"
    for text in ("{not json", json.dumps({"something": "else"}), ""):
        store.write_text(text, encoding="utf-8")
        document, kept, written = _with_kept(install, state)
        assert document == fresh and written and len(kept.packs) == 4
    # A read kept at the very fingerprint is used only when the reader that made it is this one.
    beta = install.custom / "Beta"
    print_, _ = pack_reads.fingerprint(beta, [beta / "__init__.py"], folder=True)
    stale = {"fingerprint": print_, "node_types": ["Stale"], "version": None, "registry_id": None}
    stale |= {"git_remote": None, "problems": []}
    store.write_text(json.dumps({"reader": "0" * 64, "packs": {str(beta): stale}}), encoding="utf-8")
    assert _types(_with_kept(install, state)[0])["Beta"] == ["B1"]
    store.write_text(json.dumps({"reader": pack_reads.reader_id(), "packs": {str(beta): stale}}), encoding="utf-8")
    assert _types(_with_kept(install, state)[0])["Beta"] == ["Stale"]


def test_refresh_keeps_the_reads_and_rewrites_them_only_on_a_change(tmp_path: Path) -> None:
    install, state = _install(tmp_path), tmp_path / "state"
    (install.root / "models").mkdir()
    cache_manager.refresh(install.root, state, NOW)
    store = state / "pack_reads.json"
    document = json.loads(store.read_text(encoding="utf-8"))
    assert document["reader"] == pack_reads.reader_id() and len(document["packs"]) == 4
    before = store.stat().st_mtime_ns
    outcome = cache_manager.refresh(install.root, state, NOW)
    assert store.stat().st_mtime_ns == before and not outcome.nodes_written
