"""How far one model folder is walked: a typo in extra_model_paths.yaml (``base_path: /``) must not index the
whole disk. ``[comfyui] model_walk_max_depth`` and ``model_walk_max_entries`` set the bounds; a walk that
reaches one stops there and says so (``WalkBound.reason``), and the report names the folder and the file
that declared it.

A plain class, not a dataclass: the walk ahead of a cycle (``walk_ahead``) loads this module in a process that
has loaded nothing else, and dataclasses (with inspect) would cost it a tenth of its walk."""

from __future__ import annotations

TYPE_CHECKING = False  # typing too is left unloaded; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")


class WalkBound:
    """The bounds of one walk of one model folder, and how much of them it used.

    ``max_depth``: folder levels below the model folder that are entered (1: its direct subfolders only).
    ``max_entries``: directory entries (files and folders) looked at in all. ``reason`` is None while the
    walk is within both, else why it was cut short.
    """

    __slots__ = ("entries", "max_depth", "max_entries", "reason")

    def __init__(self, max_depth: int, max_entries: int, entries: int = 0, reason: str | None = None) -> None:
        self.max_depth, self.max_entries, self.entries, self.reason = max_depth, max_entries, entries, reason

    def room_for_more(self) -> bool:
        """Return whether the walk may look into one more folder; when it may not, record why (it is asked
        only while folders are left to walk)."""
        if self.entries < self.max_entries:
            return True
        self.reason = f"stopped after {self.max_entries:,} files and folders (model_walk_max_entries)"
        return False

    def admit(self, entries: list[T]) -> list[T]:
        """Return the entries of one folder the walk may still look at: all of them, or as many as the bound
        has room for (the reason is then recorded)."""
        room = max(0, self.max_entries - self.entries)
        if len(entries) > room:
            self.reason = f"stopped after {self.max_entries:,} files and folders (model_walk_max_entries)"
            entries = entries[:room]
        self.entries += len(entries)
        return entries

    def may_enter(self, relative: str) -> bool:
        """Return whether the subfolder at ``relative`` (``a/b``, to the model folder) is within the depth
        bound (recording the reason when it is not)."""
        if relative.count("/") + 1 <= self.max_depth:
            return True
        if self.reason is None:
            self.reason = f"folders deeper than {self.max_depth} levels not walked (model_walk_max_depth)"
        return False

    def finding(self, folder: str, path: str, declared_by: tuple[str, str] | None) -> dict[str, Any]:
        """Return the ``walk_limits`` entry of model_cache.json for a walk cut short (see its schema)."""
        return {
            "folder": folder,
            "path": path,
            "config": declared_by[0] if declared_by else None,
            "section": declared_by[1] if declared_by else None,
            "reason": self.reason or "",
            "entries": self.entries,
        }


def problem_line(finding: dict[str, Any]) -> str:
    """Return the one-line problem for a walk cut short, naming the file and section that declared it."""
    where = (
        f"{finding['config']}: section {finding['section']!r}: {finding['folder']} folder {finding['path']}"
        if finding["config"]
        else f"{finding['path']} ({finding['folder']})"
    )
    hint = " (is base_path or a folder line a typo?)" if finding["config"] else ""
    return f"{where}: {finding['reason']}; its model files may be missing from the index{hint}"
