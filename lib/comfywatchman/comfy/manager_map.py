"""ComfyUI-Manager's ``extension-node-map.json``: which packs provide which node types.

Read from the user's Manager install when it has one (``custom_nodes/ComfyUI-Manager/``), else from the
``comfyui-manager`` Python package; absent both, no candidate packs are offered (and the report says so).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, NamedTuple

from comfywatchman.comfy.manager_files import find_manager_file

logger = logging.getLogger(__name__)

MAP_NAME = "extension-node-map.json"
# Patterns that claim every name (or nearly): listed, but flagged so nobody installs a pack on their word.
CATCH_ALL = frozenset({".*", "^.*$", ".+", "^.+$", "(.*)"})
# A repository URL's scheme and any user name, which ``normalize_repo`` makes plain ``https://``.
_SCHEME = re.compile(r"^(?:git\+)?(?:https?|ssh|git)://(?:[^@/]+@)?")


def normalize_repo(url: str) -> str:
    """Return a repository URL in one comparable form: ``https://host/owner/name``, lower case, no ``.git``.

    ``git@github.com:owner/name.git`` and ``https://github.com/Owner/Name/`` both become
    ``https://github.com/owner/name``.
    """
    text = url.strip()
    if text.startswith("git@") and ":" in text:
        host, _, path = text[4:].partition(":")
        text = f"https://{host}/{path}"
    if not text.startswith("https://") or "@" in text:  # else the pattern would put back what it took away
        text = _SCHEME.sub("https://", text)
    text = text.rstrip("/")
    if text.endswith(".git"):
        text = text[:-4]
    return text.lower()


# A NamedTuple and a plain class, not dataclasses: making a dataclass costs every cycle's process 0.2 to 0.4 ms
# (Python 3.11), a NamedTuple a tenth of that.
class PackCandidate(NamedTuple):
    """A pack that claims a node type."""

    repo: str
    title: str
    by_pattern: bool = False
    catch_all: bool = False

    @property
    def install_command(self) -> str:
        """The command a user runs, from their ``custom_nodes`` folder, to install this pack."""
        if self.repo.endswith(".py"):
            return f"curl -LO {self.repo}"  # single-file packs (gists) are one module dropped in custom_nodes/
        return f"git clone {self.repo}"

    def to_json(self) -> dict[str, Any]:
        """Return the candidate as stored in scan.json."""
        return {
            "repo": self.repo,
            "title": self.title,
            "by_pattern": self.by_pattern,
            "catch_all": self.catch_all,
            "install": self.install_command,
        }


class NodeMap:
    """Node type -> claiming packs, and the packs' ``nodename_pattern`` regexes."""

    __slots__ = ("_by_folder", "_by_normalized", "by_name", "nodes_by_repo", "patterns", "source")

    source: str | None
    by_name: dict[str, list[PackCandidate]]
    patterns: list[tuple[re.Pattern[str], PackCandidate]]
    nodes_by_repo: dict[str, list[str]]
    _by_normalized: dict[str, str]
    _by_folder: dict[str, list[str]]

    def __init__(
        self,
        source: str | None,
        by_name: dict[str, list[PackCandidate]] | None = None,
        patterns: list[tuple[re.Pattern[str], PackCandidate]] | None = None,
        nodes_by_repo: dict[str, list[str]] | None = None,
    ) -> None:
        self.source = source
        self.by_name = {} if by_name is None else by_name
        self.patterns = [] if patterns is None else patterns
        self.nodes_by_repo = {} if nodes_by_repo is None else nodes_by_repo
        self._by_normalized = {}
        self._by_folder = {}

    def add_repo(self, repo: str, node_names: list[str]) -> None:
        """Record the node names ``repo`` provides (and index it by normalised URL and folder name)."""
        self.nodes_by_repo[repo] = node_names
        normalized = normalize_repo(repo)
        self._by_normalized.setdefault(normalized, repo)
        self._by_folder.setdefault(normalized.rsplit("/", 1)[-1], []).append(repo)

    def repos_for(self, git_remote: str | None, folder_name: str) -> list[str]:
        """Return the map's repositories for an installed pack: by its git remote, else by a folder name
        that only one repository has (an ambiguous folder name matches nothing)."""
        if git_remote:
            repo = self._by_normalized.get(normalize_repo(git_remote))
            if repo is not None:
                return [repo]
        folder = folder_name.lower()
        for candidate in (folder, folder.removesuffix(".py")):
            repos = self._by_folder.get(candidate, [])
            if len(repos) == 1:
                return list(repos)
        return []

    def own_patterns(self, repo: str) -> list[re.Pattern[str]]:
        """Return ``repo``'s ``nodename_pattern`` (none when it claims nearly any name): the names it provides
        beyond those listed, for a pack that is installed."""
        return [p for p, c in self.patterns if c.repo == repo and not c.catch_all]

    def candidates(self, class_type: str) -> list[PackCandidate]:
        """Return every pack that claims ``class_type`` (by name, then by pattern), each once."""
        found = list(self.by_name.get(class_type, []))
        repos = {c.repo for c in found}
        for pattern, candidate in self.patterns:
            if candidate.repo not in repos and pattern.search(class_type):
                found.append(
                    PackCandidate(candidate.repo, candidate.title, by_pattern=True, catch_all=candidate.catch_all)
                )
                repos.add(candidate.repo)
        return found


def find_map(comfyui_root: Path) -> Path | None:
    """Return the extension-node-map.json to use for ``comfyui_root``, or None when none is installed."""
    return find_manager_file(comfyui_root, MAP_NAME)


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
    by_name = node_map.by_name
    for repo, entry in raw.items() if isinstance(raw, dict) else ():
        if not (isinstance(entry, list) and entry and isinstance(entry[0], list)):
            continue
        meta = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
        candidate = PackCandidate(repo, str(meta.get("title_aux") or repo.rstrip("/").rsplit("/", 1)[-1]))
        node_names = [n for n in entry[0] if isinstance(n, str)]
        node_map.add_repo(repo, node_names)
        for name in node_names:  # some 30,000 names: one lookup each, and no list made for a name listed already
            claimants = by_name.get(name)
            if claimants is None:
                by_name[name] = [candidate]
            else:
                claimants.append(candidate)
        pattern = meta.get("nodename_pattern")
        if isinstance(pattern, str) and pattern:
            _add_pattern(node_map, path, candidate, pattern)
    return node_map


def _add_pattern(node_map: NodeMap, path: Path, candidate: PackCandidate, pattern: str) -> None:
    """Add the pack ``candidate``'s ``nodename_pattern`` to ``node_map``, marked catch-all when it would claim
    any name at all; a pattern that is not a valid regex is logged (from the map at ``path``) and skipped."""
    try:
        compiled = re.compile(pattern)
    except re.error:
        logger.debug("%s: bad nodename_pattern %r for %s", path, pattern, candidate.repo)
        return
    catch_all = (
        pattern.strip() in CATCH_ALL or bool(compiled.fullmatch("")) or bool(compiled.search("zz unrelated name 123"))
    )
    node_map.patterns.append((compiled, PackCandidate(candidate.repo, candidate.title, catch_all=catch_all)))
