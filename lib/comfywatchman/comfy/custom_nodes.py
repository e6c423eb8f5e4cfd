"""Custom node packs under ``custom_nodes/``, read statically: pack code is parsed, never imported.

A pack registers its node types in ``NODE_CLASS_MAPPINGS``: a dict literal, ``NODE_CLASS_MAPPINGS[...] = ``,
``.update({...})``, or a mapping built in a submodule and imported. Parsing every module of the pack that names
such a mapping finds the submodule ones too, without executing anything; keys and merged dicts that are not
literals are computed by ``pack_source`` (class attributes, helper functions over constant strings,
dict-literal configs handed to a generator, submodule dicts merged in).
"""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path
from typing import Any

from comfywatchman import fs_names
from comfywatchman.comfy import pack_reads, pyproject
from comfywatchman.comfy.pack_source import PackSource, Resolver

logger = logging.getLogger(__name__)

MAX_MODULES = 400  # a pack with more Python files than this vendors a library; its mappings are near the top
MAX_MODULE_BYTES = 2_000_000
SKIP_DIRS = frozenset({".git", "__pycache__", "node_modules", "venv", ".venv", "tests", "test", "docs", "web", "js"})
MAPPING_SUFFIX = "NODE_CLASS_MAPPINGS"


class PackInfo:
    """One custom node pack as found on disk."""

    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = (
        "disabled_by", "enabled", "folder", "git_remote", "name", "node_types", "path", "problems", "registry_id",
        "version",
    )  # fmt: skip

    name: str
    folder: str
    path: str
    enabled: bool
    disabled_by: str | None
    node_types: list[str]
    version: str | None
    registry_id: str | None  # pyproject's project.name: the pack's id in the Comfy Registry
    git_remote: str | None
    problems: list[str]

    def __init__(
        self,
        name: str,
        folder: str,
        path: str,
        enabled: bool,
        disabled_by: str | None,
        node_types: list[str] | None = None,
        version: str | None = None,
        registry_id: str | None = None,
        git_remote: str | None = None,
        problems: list[str] | None = None,
    ) -> None:
        self.name, self.folder, self.path, self.enabled, self.disabled_by = name, folder, path, enabled, disabled_by
        self.node_types = [] if node_types is None else node_types
        self.version, self.registry_id, self.git_remote = version, registry_id, git_remote
        self.problems = [] if problems is None else problems

    def to_json(self) -> dict[str, Any]:
        """Return the pack as stored in custom_nodes_cache.json."""
        return {
            "name": self.name,
            "folder": self.folder,
            "path": self.path,
            "enabled": self.enabled,
            "disabled_by": self.disabled_by,
            "node_types": self.node_types,
            "version": self.version,
            "registry_id": self.registry_id,
            "git_remote": self.git_remote,
            "problems": self.problems,
        }


def list_packs(
    custom_nodes: Path, kept: pack_reads.PackReads | None = None, undecodable: list[str] | None = None
) -> list[PackInfo]:
    """Return every pack under ``custom_nodes`` (enabled, ``*.disabled`` and under ``.disabled/``), by name.

    With ``kept``, a pack whose files are unchanged since it was read takes that read instead of being read
    again, and each pack read is kept there (the caller saves it). A pack whose name is not UTF-8 text is left
    out, its path added to ``undecodable``."""
    packs: list[PackInfo] = []
    for entry, disabled_by in _pack_entries(custom_nodes):
        if not fs_names.is_text(entry.name):
            if undecodable is not None:
                undecodable.append(str(entry))
            continue
        name = entry.name[: -len(".disabled")] if entry.name.endswith(".disabled") else entry.name
        if entry.is_file():
            name = name[:-3] if name.endswith(".py") else name
        pack = PackInfo(
            name=name,
            folder=entry.name,
            path=str(entry),
            enabled=disabled_by is None,
            disabled_by=disabled_by,
        )
        if kept is None:
            read_pack(entry, pack)
        else:
            _read_or_reuse(entry, pack, kept)
        packs.append(pack)
    return sorted(packs, key=lambda p: (p.name.lower(), p.enabled))


def _pack_entries(custom_nodes: Path) -> list[tuple[Path, str | None]]:
    found: list[tuple[Path, str | None]] = []
    for base, marker in ((custom_nodes, None), (custom_nodes / ".disabled", "disabled_folder")):
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith((".", "__")) and entry.name != ".disabled":
                continue
            if entry.name == ".disabled":
                continue
            path = Path(entry.path)
            if entry.is_dir():
                by = marker or ("suffix" if entry.name.endswith(".disabled") else None)
                found.append((path, by))
            elif entry.name.endswith((".py", ".py.disabled")) and entry.name != "example_node.py.example":
                # ComfyUI loads single-file packs (custom_nodes/foo.py) as well.
                by = marker or ("suffix" if entry.name.endswith(".disabled") else None)
                found.append((path, by))
    return found


def _read_or_reuse(path: Path, pack: PackInfo, kept: pack_reads.PackReads) -> None:
    """Fill ``pack`` from its kept read when the fingerprint of its files matches, else read it and keep that."""
    folder = not path.is_file()
    modules = _python_file_texts(path) if folder else [str(path)]
    # The clock is read before the files are stat'ed: a file modified after that is never kept as unchanged.
    started = kept.clock()
    print_, newest = pack_reads.fingerprint(path, modules, folder)
    reused = kept.get(pack.path, print_)
    if reused is not None:
        for key, value in reused.items():
            setattr(pack, key, value)
        return
    _read_modules(path, pack, [Path(text) for text in modules])
    kept.put(pack.path, print_, newest, started, {key: getattr(pack, key) for key in pack_reads.FIELDS})


def read_pack(path: Path, pack: PackInfo) -> None:
    """Fill ``pack`` with the node types, version and git remote read from the pack at ``path``."""
    _read_modules(path, pack, [path] if path.is_file() else _python_files(path))


def _read_modules(path: Path, pack: PackInfo, modules: list[Path]) -> None:
    """Fill ``pack`` from ``modules`` (the pack's Python files, as ``_python_files`` lists them) and, for a
    folder, its pyproject.toml and git remote."""
    types: set[str] = set()
    source = PackSource(modules, pack.problems, MAX_MODULE_BYTES)
    resolver = Resolver(source, _is_mapping_name)
    for module in modules:
        data = source.source(module)
        # Only a module that names a mapping can fill one; most of a pack's modules do not. The others are
        # parsed only when a mapping refers to a name they define.
        if data is None or MAPPING_SUFFIX.encode() not in data.upper():
            continue
        tree = source.tree(module)
        if tree is not None:
            types.update(resolver.filled_keys(tree, module, _is_mapping_name))
    pack.node_types = sorted(types)
    if path.is_dir():
        pack.version, pack.registry_id = _pyproject_fields(path / "pyproject.toml", pack)
        pack.git_remote = _git_remote(path / ".git")


def _python_files(root: Path) -> list[Path]:
    return [Path(text) for text in _python_file_texts(root)]


def _python_file_texts(root: Path) -> list[str]:
    """Return the paths (as text) of the pack's Python files that are read: ``__init__.py`` files first, then
    by depth and path. Text, not ``Path``: an unchanged pack only stats them, every cycle."""
    files: list[str] = []
    sep = os.sep
    for folder, dirs, names in os.walk(root):
        # A name that is not UTF-8 text cannot be imported as a module, nor kept in pack_reads.json: left out.
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".") and fs_names.is_text(d))
        # os.walk joins onto str(root), which a Path keeps normalised: each text is str() of its Path.
        parent = folder if folder.endswith(sep) else folder + sep
        files.extend(parent + n for n in sorted(names) if n.endswith(".py") and fs_names.is_text(n))
        if len(files) >= MAX_MODULES:
            logger.debug("%s: more than %d modules; reading the first ones only", root, MAX_MODULES)
            break
    # __init__.py first: that is where ComfyUI looks, and its mapping is the authoritative one. Every file is
    # under root, so its count of separators orders by depth as the number of its Path's parts did.
    files.sort(key=lambda t: (not t.endswith(sep + "__init__.py"), t.count(sep), t))
    return files[:MAX_MODULES]


def _is_mapping_name(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id.upper().endswith(MAPPING_SUFFIX)
    if isinstance(node, ast.Attribute):
        return node.attr.upper().endswith(MAPPING_SUFFIX)
    return False


def _pyproject_fields(path: Path, pack: PackInfo) -> tuple[str | None, str | None]:
    """Return ``project.version`` and ``project.name`` (the Comfy Registry id) of a pack's pyproject.toml."""
    try:
        project = pyproject.project_table(path)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        pack.problems.append(f"{path}: cannot read version: {exc}")
        return None, None
    version, name = project.get("version"), project.get("name")
    return (str(version) if version is not None else None), (name if isinstance(name, str) and name else None)


def _git_remote(git_dir: Path) -> str | None:
    """Return the ``origin`` URL (else the first remote's) from the pack's ``.git/config``, or None."""
    import configparser  # only for a pack read anew: a cycle that keeps every pack's reads never needs it

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        if not parser.read(git_dir / "config", encoding="utf-8"):
            return None
    except configparser.Error:
        return None
    remotes = [s for s in parser.sections() if s.startswith("remote ")]
    remotes.sort(key=lambda s: s != 'remote "origin"')
    for section in remotes:
        url = parser.get(section, "url", fallback=None)
        if url:
            return url
    return None
