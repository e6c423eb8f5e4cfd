"""Which workflow folders could not be listed this cycle, so their workflows are kept rather than removed.

An intake source folder that held workflows last cycle is *unavailable* when it cannot be listed now:

- it is gone, and the path pattern that named it matches no folder at all this cycle (an unplugged drive
  takes the whole pattern with it; a literal path such as ``~/Downloads/workflows`` is gone alone). When a
  glob such as ``{comfyui_root}/user/*/workflows`` still matches other folders, the one that went away was
  deleted (one user's folder), and its workflows count as removed;
- or listing it fails (permissions, an I/O error), itself or a subfolder.

A folder no pattern names any more was dropped from the configuration: its workflows count as removed.
The workflows of an unavailable folder are kept as they were (``intake.json`` ``kept``), nothing is
acknowledged again when it is back, and the report keeps its last good version, marked stale.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from comfywatchman.config import Config, expand_path

logger = logging.getLogger(__name__)

GONE = "gone (a drive that is not mounted, or a folder moved?)"


# A plain class and a NamedTuple, not dataclasses: every cycle's process makes these classes, and a dataclass
# costs it 0.2 to 0.4 ms to make (Python 3.11).
class Listing:
    """What the intake's walk saw: the folders each source matched and those that could not be listed."""

    __slots__ = ("failed", "matched", "undecodable")

    matched: dict[str, list[Path]]
    failed: dict[Path, str]
    #: Files and folders left out because their name is not UTF-8 text (``fs_names``), as the walk gave them.
    undecodable: list[str]

    def __init__(
        self,
        matched: dict[str, list[Path]] | None = None,
        failed: dict[Path, str] | None = None,
        undecodable: list[str] | None = None,
    ) -> None:
        self.matched = {} if matched is None else matched
        self.failed = {} if failed is None else failed
        self.undecodable = [] if undecodable is None else undecodable


class Unavailable(NamedTuple):
    """A folder that could not be listed this cycle: its source and why (``unreadable``: listing failed)."""

    source: str
    folder: Path
    reason: str
    unreadable: bool


def previous_folders(document: Mapping[str, Any]) -> dict[str, list[str]]:
    """Return the folders per source that the last intake knew: those it matched and those it kept."""
    folders: dict[str, list[str]] = {s["name"]: list(s["folders"]) for s in document["sources"]}
    for entry in document.get("unavailable", []):
        known = folders.setdefault(entry["source"], [])
        if entry["workflows"] and entry["folder"] not in known:
            known.append(entry["folder"])
    return folders


def source_patterns(config: Config, name: str) -> list[str]:
    """Return the expanded path patterns of intake source ``name`` (none when it is no longer configured)."""
    source = config.section("intake")["sources"].get(name)
    if source is None:
        return []
    return [str(expand_path(p, os.environ, config.home, config.comfyui_root)) for p in source["paths"]]


def _matches(pattern: str, folder: Path) -> bool:
    """Return whether ``folder`` is one a path pattern names (glob semantics: ``*`` stays in one part)."""
    if not glob.has_magic(pattern):
        return Path(pattern) == folder
    want, have = Path(pattern).parts, folder.parts
    return len(want) == len(have) and all(fnmatch.fnmatchcase(h, w) for h, w in zip(have, want, strict=True))


def _why_gone(folder: Path, patterns: list[str], matched: list[Path]) -> str | None:
    """Return why a folder of last cycle is unavailable now, or None when its workflows count as removed."""
    try:
        if folder.is_dir():
            return None  # still there: the configuration no longer names it
    except OSError as exc:  # a parent cannot be searched
        return f"cannot be reached: {exc.strerror or exc}"
    naming = [p for p in patterns if _matches(p, folder)]
    if not naming:
        return None  # dropped from the configuration
    for pattern in naming:
        if glob.has_magic(pattern) and any(_matches(pattern, m) for m in matched):
            return None  # its siblings are there: this one was deleted
    return GONE


def _source_of(folder: Path, matched: Mapping[str, list[Path]]) -> str:
    for name, dirs in matched.items():
        if any(folder == d or folder.is_relative_to(d) for d in dirs):
            return name
    return "?"


def unavailable_folders(config: Config, listing: Listing, previous: Mapping[str, list[str]]) -> dict[Path, Unavailable]:
    """Return every folder that could not be listed this cycle: failed listings, and folders of last cycle
    that are gone while the pattern naming them matches nothing now."""
    found: dict[Path, Unavailable] = {}
    for folder, error in sorted(listing.failed.items()):
        found[folder] = Unavailable(_source_of(folder, listing.matched), folder, f"cannot be read: {error}", True)
    for name, folders in previous.items():
        matched = listing.matched.get(name, [])
        patterns = source_patterns(config, name)
        for text in folders:
            folder = Path(text)
            if folder in matched or folder in found:
                continue
            reason = _why_gone(folder, patterns, matched)
            if reason is not None:
                found[folder] = Unavailable(name, folder, reason, False)
    return found


def kept_paths(gone: Iterable[str], unavailable: Collection[Path], unreadable_files: Collection[str]) -> set[str]:
    """Return the paths of last cycle, not found now, that are kept: below an unavailable folder, or a file
    that could not be read."""
    kept = set()
    for text in gone:
        path = Path(text)
        if text in unreadable_files or any(path.is_relative_to(folder) for folder in unavailable):
            kept.add(text)
    return kept


def describe(unavailable: Mapping[Path, Unavailable], kept: Collection[str]) -> list[dict[str, Any]]:
    """Return the ``intake.json`` ``unavailable`` entries: every folder that could not be read, and every gone
    folder whose workflows are kept (a gone folder that held none is simply no longer there)."""
    entries = []
    for folder, item in sorted(unavailable.items()):
        count = sum(1 for path in kept if Path(path).is_relative_to(folder))
        if count or item.unreadable:
            entries.append({"source": item.source, "folder": str(folder), "reason": item.reason, "workflows": count})
        else:
            logger.info("intake: %s is gone; it held no workflow", folder)
    return entries


def message(entry: Mapping[str, Any]) -> str:
    """Return the one-line error for an ``unavailable`` entry, naming the folder and what happens."""
    count = entry["workflows"]
    kept = (
        f"its {count} known workflow{'s are' if count != 1 else ' is'} kept as before (none marked removed) "
        "and the last report stays, marked stale"
        if count
        else "no workflow of it was known yet"
    )
    return f"{entry['folder']}: workflows folder unavailable this cycle: {entry['reason']}; {kept}"


def stale_reason(entries: Iterable[Mapping[str, Any]]) -> str | None:
    """Return why the report is stale (the unavailable folders that hold known workflows), or None."""
    parts = [f"{e['folder']}: {e['reason']}" for e in entries if e["workflows"]]
    if not parts:
        return None
    return "workflows folder unavailable: " + "; ".join(parts)
