"""The installed side of the comparison: indexes over the model and custom-node caches.

Model references are matched against an index of the files that were scanned, never by joining a workflow's
string onto a folder path, so a name cannot reach outside the model folders. When a ComfyUI server answered
``/object_info``, its node types and combo lists decide first and every verdict says which source gave it.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, NamedTuple

from comfywatchman import resources
from comfywatchman.comfy.manager_map import NodeMap, PackCandidate, normalize_repo
from comfywatchman.comfy.server import ServerTruth
from comfywatchman.workflow import names

# Node types the frontend draws that never exist on the server.
FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})


@cache
def core_node_types() -> frozenset[str]:
    """Return the node types ComfyUI itself provides (``data/core_nodes.txt``)."""
    text = (resources.DATA_DIR / "core_nodes.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@cache
def frontend_pack_nodes() -> dict[str, frozenset[str]]:
    """Return normalised pack repository URL -> node types that pack draws in the browser only."""
    raw = json.loads((resources.DATA_DIR / "frontend_nodes.json").read_text(encoding="utf-8"))
    return {normalize_repo(repo): frozenset(types) for repo, types in raw.items() if not repo.startswith("_")}


# NamedTuples and plain classes, not dataclasses: making a dataclass costs every cycle's process 0.2 to 0.4 ms
# (Python 3.11), a NamedTuple a tenth of that.
class ModelMatch(NamedTuple):
    """The outcome of looking one reference up: installed or not, and what was close."""

    installed: bool
    installed_as: str | None
    looked_in: list[str]
    note: str = ""
    checked_by: str = "files"


class ModelIndex:
    """Folder type -> exact and case-folded keys of every installed model file."""

    __slots__ = (
        "_all_paths", "_any", "_unindexed", "basename_counts", "by_basename", "case_insensitive", "exact", "folded",
        "paths",
    )  # fmt: skip

    paths: dict[str, list[str]]
    exact: dict[str, dict[str, str]]
    folded: dict[str, dict[str, str]]
    # folder type -> case-folded file name (no subfolder) -> the first file so named, and how many are
    by_basename: dict[str, dict[str, str]]
    basename_counts: dict[str, Counter[str]]
    case_insensitive: bool
    _all_paths: list[str]

    # folder type -> its files in the model cache, not indexed yet: a folder is indexed when first asked about
    # (a scan of a few changed workflows asks about a few folders of an install of 100,000 files)
    _unindexed: dict[str, list[Mapping[str, Any]]]
    # every folder's indexes merged, for a name asked about in any folder (made when first asked)
    _any: tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, int]] | None

    def __init__(
        self,
        paths: dict[str, list[str]] | None = None,
        exact: dict[str, dict[str, str]] | None = None,
        folded: dict[str, dict[str, str]] | None = None,
        by_basename: dict[str, dict[str, str]] | None = None,
        basename_counts: dict[str, Counter[str]] | None = None,
        case_insensitive: bool = sys.platform in ("win32", "darwin"),
    ) -> None:
        self.paths = {} if paths is None else paths
        self.exact = {} if exact is None else exact
        self.folded = {} if folded is None else folded
        self.by_basename = {} if by_basename is None else by_basename
        self.basename_counts = {} if basename_counts is None else basename_counts
        self.case_insensitive = case_insensitive
        self._all_paths = []
        self._unindexed = {}
        self._any = None

    @classmethod
    def from_cache(cls, model_cache: Mapping[str, Any], case_insensitive: bool | None = None) -> ModelIndex:
        """Return the index over a model_cache.json document (each folder indexed when first asked about)."""
        index = cls()
        if case_insensitive is not None:
            index.case_insensitive = case_insensitive
        for folder, group in model_cache["folders"].items():
            index.paths[folder] = list(group["paths"])
            index._unindexed[folder] = group["files"]
        index._all_paths = [p for f in sorted(index.paths) for p in index.paths[f]]
        return index

    def _index_folder(self, folder: str) -> None:
        """Index the files of ``folder`` (once)."""
        files = self._unindexed.pop(folder, None)
        if files is None:
            return
        # Every file of every folder asked about passes here once per scan: each step is one pass in C over
        # the folder's names (names.normalize's steps; the first file of a key wins, as reversed() makes it).
        found = [entry["name"] for entry in files]
        norms = [name.strip().replace("\\", "/") for name in found]
        if not all(map(str.isascii, norms)):
            norms = [n if n.isascii() else unicodedata.normalize("NFC", n) for n in norms]
        folded = list(map(str.casefold, norms))
        # names.basename(norm).casefold(): casefolding never makes or removes a "/"
        bases = [low[low.rfind("/") + 1 :] for low in folded]
        self.exact[folder] = dict(zip(reversed(norms), reversed(found), strict=True))
        self.folded[folder] = dict(zip(reversed(folded), reversed(found), strict=True))
        self.by_basename[folder] = dict(zip(reversed(bases), reversed(found), strict=True))
        self.basename_counts[folder] = Counter(bases)

    def looked_in(self, folder: str | None) -> list[str]:
        """Return the directories searched for ``folder`` (every directory when the folder is unknown)."""
        return self._all_paths if folder is None else self.paths.get(folder, [])

    def find(self, name: str, folder: str | None, suffixes: Iterable[str] = ("",)) -> ModelMatch:
        """Return whether ``name`` (as a workflow writes it) is installed in ``folder`` (None: any folder).

        Each of ``suffixes`` is appended in turn (embeddings: ``""``, ``.safetensors``, ``.pt``, ``.bin``).
        """
        looked_in = self.looked_in(folder)
        if folder is not None and suffixes == ("",):
            return self._find_in(names.normalize(name), folder, looked_in)
        if folder is None:
            exact, folded, first, counts = self._any_folder()
        else:
            self._index_folder(folder)
            exact, folded = self.exact.get(folder, _NO_KEYS), self.folded.get(folder, _NO_KEYS)
            first, counts = self.by_basename.get(folder, _NO_KEYS), self.basename_counts.get(folder, _NO_COUNTS)
        tries = [names.normalize(name + suffix) for suffix in suffixes]
        for norm in tries:
            hit = exact.get(norm)
            if hit is not None:
                return ModelMatch(True, hit, looked_in)
        for norm in tries:
            hit = folded.get(norm.casefold())
            if hit is not None:
                if self.case_insensitive:
                    return ModelMatch(True, hit, looked_in)
                return ModelMatch(False, hit, looked_in, f"installed as {hit!r}: the letter case differs")
        for norm in tries:
            base = names.basename(norm).casefold()
            count = counts.get(base)
            if count:
                hit, note = _basename_match(first[base], count)
                return ModelMatch(False, hit, looked_in, note)
        if folder is not None and folder not in self.paths:
            return ModelMatch(False, None, looked_in, f"no {folder!r} folder in this install")
        return ModelMatch(False, None, looked_in)

    def _any_folder(
        self,
    ) -> tuple[Mapping[str, str], Mapping[str, str], Mapping[str, str], Mapping[str, int]]:
        """Return the exact, case-folded and file name indexes (first files, counts) of every folder at once:
        a key's entry is the one of the first folder, in name order, that has it (what asking each folder in
        that order finds), merged once and kept."""
        if self._any is None:
            for unindexed in list(self._unindexed):
                self._index_folder(unindexed)
            merged: tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, int]] = ({}, {}, {}, {})
            # Merged last folder first: the first folder's entries are written last, so they win.
            for folder in sorted(self.exact, reverse=True):
                merged[0].update(self.exact[folder])
                merged[1].update(self.folded[folder])
                merged[2].update(self.by_basename[folder])
                merged[3].update(self.basename_counts[folder])
            self._any = merged
        return self._any

    def _find_in(self, norm: str, folder: str, looked_in: list[str]) -> ModelMatch:
        """``find`` for the normalised name ``norm`` in one folder, as written (what nearly every loader asks)."""
        installed, installed_as, note = self.lookup_in(norm, folder)
        return ModelMatch(installed, installed_as, looked_in, note)

    def _by_basename(self, folder: str, base: str) -> tuple[str | None, str] | None:
        """Return the file of ``folder`` named ``base`` (case-folded, any subfolder) and the note saying so,
        or None and the note when several files have that name, or None when none has."""
        count = self.basename_counts.get(folder, _NO_COUNTS).get(base)
        return _basename_match(self.by_basename[folder][base], count) if count else None

    def lookup_in(self, norm: str, folder: str) -> tuple[bool, str | None, str]:
        """Return ``(installed, installed_as, note)`` of ``find`` for the normalised name ``norm`` in one
        folder, without suffixes: one normalisation and one lookup per index, no ModelMatch made (the scan
        asks this for every distinct name of every workflow)."""
        if folder in self._unindexed:
            self._index_folder(folder)
        hit = self.exact.get(folder, _NO_KEYS).get(norm)
        if hit is not None:
            return True, hit, ""
        hit = self.folded.get(folder, _NO_KEYS).get(norm.casefold())
        if hit is not None:
            if self.case_insensitive:
                return True, hit, ""
            return False, hit, f"installed as {hit!r}: the letter case differs"
        found = self._by_basename(folder, norm.rsplit("/", 1)[-1].casefold())
        if found is not None:
            return (False, *found)
        if folder not in self.paths:
            return False, None, f"no {folder!r} folder in this install"
        return False, None, ""


_NO_KEYS: Mapping[str, str] = {}
_NO_COUNTS: Mapping[str, int] = {}


def _basename_match(first: str, count: int) -> tuple[str | None, str]:
    """Return what matched a name only in another subfolder (``count`` files so named, ``first`` the first
    of them): that file when it is the only one, else None; and the note saying so."""
    if count == 1:
        return first, f"installed as {first!r} in another subfolder"
    return None, f"{count} files of that name in other subfolders"


# What the report says of a type an installed pack should provide that nothing shows: never "install it".
NOT_FOUND_IN_PACK = "pack installed, node type not found: the pack may have failed to import or be outdated"
NOT_LOADED = "installed but not loaded by the server (import error, or restart needed)"
CORE_ID = "comfy-core"  # the cnr_id nodes of ComfyUI itself carry
OUTDATED_CORE = "a core node this ComfyUI does not have: update ComfyUI"
# What a workflow may name as a pack and be echoed into an install command: registry ids and owner/repo only.
_REGISTRY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_GITHUB_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")


class NodeState(NamedTuple):
    """Whether a node type is available, from where, and which source said so (server or files)."""

    state: str  # core | frontend | installed | disabled | missing
    packs: list[dict[str, Any]]
    checked_by: str = "files"


class InstalledPack(NamedTuple):
    """What identifies an installed pack when a workflow names the pack its node was made with."""

    name: str
    enabled: bool
    repos: frozenset[str]  # normalised repository URLs: its git remote and those it was matched to in the map
    names: frozenset[str]  # lower case: folder name, registry id (pyproject's project.name), repository names


class NodeIndex:
    """Node type -> where it comes from: core, the frontend, an installed or a disabled pack."""

    __slots__ = (
        "core", "disabled", "disabled_repos", "enabled", "enabled_repos", "installed", "node_map", "pack_repos",
        "patterns", "server",
    )  # fmt: skip

    enabled: dict[str, list[str]]
    disabled: dict[str, list[str]]
    core: frozenset[str]
    node_map: NodeMap
    server: ServerTruth | None
    # pack name -> repositories it was matched to in the node map (by git remote, else folder name)
    pack_repos: dict[str, list[str]]
    enabled_repos: set[str]
    disabled_repos: dict[str, str]
    # An installed pack's nodename_pattern from its Manager entry: (pattern, pack name, enabled)
    patterns: list[tuple[re.Pattern[str], str, bool]]
    installed: list[InstalledPack]

    def __init__(
        self,
        enabled: dict[str, list[str]] | None = None,
        disabled: dict[str, list[str]] | None = None,
        core: frozenset[str] = frozenset(),
        node_map: NodeMap | None = None,
        server: ServerTruth | None = None,
        pack_repos: dict[str, list[str]] | None = None,
        enabled_repos: set[str] | None = None,
        disabled_repos: dict[str, str] | None = None,
        patterns: list[tuple[re.Pattern[str], str, bool]] | None = None,
        installed: list[InstalledPack] | None = None,
    ) -> None:
        self.enabled = {} if enabled is None else enabled
        self.disabled = {} if disabled is None else disabled
        self.core = core
        self.node_map = NodeMap(source=None) if node_map is None else node_map
        self.server = server
        self.pack_repos = {} if pack_repos is None else pack_repos
        self.enabled_repos = set() if enabled_repos is None else enabled_repos
        self.disabled_repos = {} if disabled_repos is None else disabled_repos
        self.patterns = [] if patterns is None else patterns
        self.installed = [] if installed is None else installed

    @classmethod
    def from_cache(
        cls,
        nodes_cache: Mapping[str, Any],
        node_map: NodeMap,
        core: frozenset[str] | None = None,
        server: ServerTruth | None = None,
    ) -> NodeIndex:
        """Return the index over a custom_nodes_cache.json document and ComfyUI-Manager's map.

        A pack provides what its NODE_CLASS_MAPPINGS say plus what the Manager map lists for the same
        repository (matched by the pack's git remote, else by its folder name), and every type its entry's
        ``nodename_pattern`` matches, so a pack that builds its mapping at import time is not taken to miss
        its own nodes.
        """
        index = cls(core=core_node_types() if core is None else core, node_map=node_map, server=server)
        for pack in nodes_cache["packs"]:
            target = index.enabled if pack["enabled"] else index.disabled
            repos = node_map.repos_for(pack.get("git_remote"), pack["name"])
            index.pack_repos[pack["name"]] = repos
            types = set(pack["node_types"])
            for repo in repos:
                types.update(node_map.nodes_by_repo.get(repo, ()))
                index.patterns.extend((p, pack["name"], pack["enabled"]) for p in node_map.own_patterns(repo))
                if pack["enabled"]:
                    index.enabled_repos.add(normalize_repo(repo))
                else:
                    index.disabled_repos.setdefault(normalize_repo(repo), pack["name"])
            for node_type in sorted(types):
                target.setdefault(node_type, []).append(pack["name"])
            index.installed.append(_installed_pack(pack, repos))
        return index

    def state(self, class_type: str, made_with: Mapping[str, str] | None = None) -> NodeState:
        """Return where ``class_type`` comes from, with candidate packs when it is missing.

        ``made_with`` is what the workflow's node says of its pack (``cnr_id``, ``aux_id``): it names the
        pack to install before any claimant of the Manager map does.
        """
        if class_type in FRONTEND_ONLY:
            return NodeState("frontend", [])
        frontend_owner = self._frontend_owner(class_type)
        if frontend_owner is not None:
            return frontend_owner
        if self.server is not None:
            return self._server_state(class_type, made_with)
        enabled = self.enabled_packs(class_type)
        if enabled:
            return NodeState("installed", [{"name": n, "installed": True} for n in enabled])
        if class_type in self.core:
            return NodeState("core", [])
        return self._unavailable(class_type, "files", made_with)

    def enabled_packs(self, class_type: str) -> list[str]:
        """Return the enabled packs that provide ``class_type``: by their files and Manager names, else by
        their Manager entry's ``nodename_pattern``."""
        found = self.enabled.get(class_type)
        if found:
            return found
        return [name for pattern, name, on in self.patterns if on and pattern.search(class_type)]

    def _disabled_packs(self, class_type: str) -> list[str]:
        found = self.disabled.get(class_type)
        if found:
            return found
        return [name for pattern, name, on in self.patterns if not on and pattern.search(class_type)]

    def _frontend_owner(self, class_type: str) -> NodeState | None:
        owners = [repo for repo, types in frontend_pack_nodes().items() if class_type in types]
        if not owners:
            return None
        for repo in owners:
            if repo in self.enabled_repos:
                return NodeState("frontend", [{"name": repo.rsplit("/", 1)[-1], "installed": True, "repo": repo}])
        for repo in owners:
            if repo in self.disabled_repos:
                name = self.disabled_repos[repo]
                return NodeState("disabled", [{"name": name, "installed": False, "disabled": True, "repo": repo}])
        candidates = [PackCandidate(repo, repo.rsplit("/", 1)[-1]) for repo in owners]
        extra = [c for c in self.node_map.candidates(class_type) if normalize_repo(c.repo) not in owners]
        return NodeState("missing", [_candidate_json(c) for c in [*candidates, *extra]])

    def _server_state(self, class_type: str, made_with: Mapping[str, str] | None) -> NodeState:
        assert self.server is not None
        if self.server.has_node(class_type):
            pack = self.server.pack_of(class_type)
            if pack is None:
                return NodeState("core", [], "server")
            return NodeState("installed", [{"name": pack, "installed": True}], "server")
        enabled = self.enabled_packs(class_type)
        if enabled:
            # On disk but not loaded: the pack failed to import, or ComfyUI was not restarted since.
            return NodeState("missing", [{"name": n, "installed": True, "note": NOT_LOADED} for n in enabled], "server")
        return self._unavailable(class_type, "server", made_with)

    def _unavailable(self, class_type: str, checked_by: str, made_with: Mapping[str, str] | None) -> NodeState:
        disabled = self._disabled_packs(class_type)
        if disabled:
            packs = [{"name": n, "installed": False, "disabled": True} for n in disabled]
            return NodeState("disabled", packs, checked_by)
        named = self._named_pack(class_type, checked_by, made_with or {})
        if named is not None:
            return named
        packs = [_candidate_json(c) for c in self.node_map.candidates(class_type)]
        if not packs and class_type in self.core:
            packs = [{"name": "ComfyUI", "installed": True, "note": OUTDATED_CORE}]
        return NodeState("missing", packs, checked_by)

    def _named_pack(self, class_type: str, checked_by: str, made_with: Mapping[str, str]) -> NodeState | None:
        """Return the state of a type whose workflow names its pack: a core node of a newer ComfyUI, a type
        an installed pack should have, one a disabled pack may have, or the named pack to install."""
        cnr_id, aux_id = _named_ids(made_with)
        if cnr_id == CORE_ID:
            return NodeState("missing", [{"name": "ComfyUI", "installed": True, "note": OUTDATED_CORE}], checked_by)
        if cnr_id is None and aux_id is None:
            return None
        matches = self._installed_named(cnr_id, aux_id)
        enabled = [p for p in matches if p.enabled]
        if enabled:
            note = NOT_LOADED if checked_by == "server" else NOT_FOUND_IN_PACK
            return NodeState(
                "missing", [{"name": p.name, "installed": True, "note": note} for p in enabled], checked_by
            )
        if matches:
            packs = [{"name": p.name, "installed": False, "disabled": True} for p in matches]
            return NodeState("disabled", packs, checked_by)
        return NodeState("missing", [self._workflow_candidate(class_type, cnr_id, aux_id)], checked_by)

    def _installed_named(self, cnr_id: str | None, aux_id: str | None) -> list[InstalledPack]:
        """Return the installed packs (enabled or not) that the registry id ``cnr_id`` or the GitHub repository
        ``aux_id`` names: by repository, or by a name the pack goes by."""
        repo = normalize_repo(f"https://github.com/{aux_id}") if aux_id else None
        keys = {k.lower() for k in (cnr_id, repo.rsplit("/", 1)[-1] if repo else None) if k}
        return [p for p in self.installed if (repo is not None and repo in p.repos) or keys & p.names]

    def _workflow_candidate(self, class_type: str, cnr_id: str | None, aux_id: str | None) -> dict[str, Any]:
        """Return the pack the workflow names, as a candidate: with the Manager map's title and repository
        when the map knows it, and the registry id (for ``comfy node install``) when the workflow gives one."""
        claimants = self.node_map.candidates(class_type)
        repo = normalize_repo(f"https://github.com/{aux_id}") if aux_id else None
        known = next((c for c in claimants if repo is not None and normalize_repo(c.repo) == repo), None)
        if known is None and repo is None and cnr_id is not None:
            # Only a registry id: a claimant whose repository has that name is the same pack.
            known = next((c for c in claimants if normalize_repo(c.repo).rsplit("/", 1)[-1] == cnr_id.lower()), None)
        url = known.repo if known is not None else (f"https://github.com/{aux_id}" if aux_id else None)
        title = known.title if known is not None else (cnr_id or (repo or "").rsplit("/", 1)[-1])
        candidate: dict[str, Any] = {
            "name": title,
            "installed": False,
            "repo": url,
            "title": title,
            "registry_id": cnr_id,
            "from_workflow": True,
            "by_pattern": False,
            "catch_all": False,
            # git clone where the repository is known, like every other candidate; comfy-cli only when the
            # registry id is all there is.
            "install": PackCandidate(url, title).install_command if url else f"comfy node install {cnr_id}",
        }
        return candidate


def _named_ids(made_with: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Return the registry id (``cnr_id``) and GitHub ``owner/repo`` (``aux_id``) a workflow node names as its
    pack, each None when absent or not well formed."""
    cnr_id = made_with.get("cnr_id")
    aux_id = made_with.get("aux_id")
    return (
        cnr_id if cnr_id and _REGISTRY_ID.fullmatch(cnr_id) else None,
        aux_id if aux_id and _GITHUB_REPO.fullmatch(aux_id) else None,
    )


def _installed_pack(pack: Mapping[str, Any], repos: list[str]) -> InstalledPack:
    remote = pack.get("git_remote")
    urls = {normalize_repo(r) for r in repos}
    if remote:
        urls.add(normalize_repo(remote))
    # A registry id is most often the repository's name in lower case: a remote's name stands for one too.
    names = {pack["name"].lower().removesuffix(".py"), *(url.rsplit("/", 1)[-1] for url in urls)}
    if pack.get("registry_id"):
        names.add(str(pack["registry_id"]).lower())
    return InstalledPack(pack["name"], bool(pack["enabled"]), frozenset(urls), frozenset(names))


def _candidate_json(candidate: PackCandidate) -> dict[str, Any]:
    return {"name": candidate.title, "installed": False, **candidate.to_json()}
