"""ComfyUI-Manager's ``extension-node-map.json``: which packs provide which node types.

Read from the user's Manager install when it has one (``custom_nodes/ComfyUI-Manager/``), else from the
``comfyui-manager`` Python package; absent both, no candidate packs are offered (and the report says so).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MAP_NAME = "extension-node-map.json"


@dataclass(frozen=True)
class PackCandidate:
    """A pack that claims a node type."""

    repo: str
    title: str
    by_pattern: bool = False

    @property
    def install_command(self) -> str:
        """The command a user runs, from their ``custom_nodes`` folder, to install this pack."""
        if self.repo.endswith(".py"):
            return f"curl -LO {self.repo}"  # single-file packs (gists) are one module dropped in custom_nodes/
        return f"git clone {self.repo}"

    def to_json(self) -> dict[str, Any]:
        """Return the candidate as stored in scan.json."""
        return {"repo": self.repo, "title": self.title, "by_pattern": self.by_pattern, "install": self.install_command}


@dataclass
class NodeMap:
    """Node type -> claiming packs, and the packs' ``nodename_pattern`` regexes."""

    source: str | None
    by_name: dict[str, list[PackCandidate]] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], PackCandidate]] = field(default_factory=list)
    nodes_by_repo: dict[str, list[str]] = field(default_factory=dict)

    def candidates(self, class_type: str) -> list[PackCandidate]:
        """Return every pack that claims ``class_type`` (by name, then by pattern), each once."""
        found = list(self.by_name.get(class_type, []))
        repos = {c.repo for c in found}
        for pattern, candidate in self.patterns:
            if candidate.repo not in repos and pattern.search(class_type):
                found.append(PackCandidate(candidate.repo, candidate.title, by_pattern=True))
                repos.add(candidate.repo)
        return found


def find_map(comfyui_root: Path) -> Path | None:
    """Return the extension-node-map.json to use for ``comfyui_root``, or None when none is installed."""
    for folder in ("ComfyUI-Manager", "comfyui-manager"):
        candidate = comfyui_root / "custom_nodes" / folder / MAP_NAME
        if candidate.is_file():
            return candidate
    spec = importlib.util.find_spec("comfyui_manager")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / MAP_NAME
        if candidate.is_file():
            return candidate
    return None


def load(path: Path | None) -> NodeMap:
    """Return the node map read from ``path`` (an empty map when None or unreadable, with a warning)."""
    if path is None:
        return NodeMap(source=None)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("%s: cannot read ComfyUI-Manager node map: %s", path, exc)
        return NodeMap(source=None)
    node_map = NodeMap(source=str(path))
    for repo, entry in raw.items() if isinstance(raw, dict) else ():
        if not (isinstance(entry, list) and entry and isinstance(entry[0], list)):
            continue
        meta = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
        candidate = PackCandidate(repo, str(meta.get("title_aux") or repo.rstrip("/").rsplit("/", 1)[-1]))
        node_names = [n for n in entry[0] if isinstance(n, str)]
        node_map.nodes_by_repo[repo] = node_names
        for name in node_names:
            node_map.by_name.setdefault(name, []).append(candidate)
        pattern = meta.get("nodename_pattern")
        if isinstance(pattern, str) and pattern:
            try:
                node_map.patterns.append((re.compile(pattern), candidate))
            except re.error:
                logger.debug("%s: bad nodename_pattern %r for %s", path, pattern, repo)
    return node_map
