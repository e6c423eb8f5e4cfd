"""Commands a ComfyUI user knows, with exact paths: what to paste to download a model, install or re-enable a
custom node pack, or search again.

Each command is a structured step (``tool``, ``argv``, ``cwd``, the ``shell`` line to paste, a ``note``) so
master_status.json can be read by tools and master_status.md can print the shell line. Paths are quoted for a
POSIX shell (``shlex.quote``); a token is named by its environment variable, never by its value.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

# https://huggingface.co/OWNER/REPO/resolve/REVISION/PATH (model repos; datasets and spaces have a prefix)
_HF_RESOLVE = re.compile(r"^https://huggingface\.co/(?!datasets/|spaces/)([^/]+/[^/]+)/resolve/([^/]+)/([^?#]+)")
HF_TOKEN = "HF_TOKEN"
CIVITAI_TOKEN = "CIVITAI_API_KEY"


class InstallFacts:
    """What the commands need to know about the install and this cycle.

    ``disabled``: disabled pack name -> its custom_nodes_cache.json entry (``path``, ``disabled_by``);
    ``targets``: (folder type, lookup key of the name) -> the download queue's ``target_path``;
    ``rerun``: the argv that runs a cycle now (with this run's root, home and config).
    """

    # A plain class, not a frozen dataclass: making a dataclass costs every cycle's process ~0.4 ms (Python
    # 3.11). Nothing assigns to one once made, and none is hashed (its mappings are not hashable).
    __slots__ = ("disabled", "next_cycle_at", "offline", "python", "rerun", "root", "targets")

    root: str
    python: str | None
    disabled: Mapping[str, Mapping[str, Any]]
    targets: Mapping[tuple[str | None, str], str | None]
    next_cycle_at: str | None
    offline: bool
    rerun: Sequence[str]

    def __init__(
        self,
        root: str,
        python: str | None = None,
        disabled: Mapping[str, Mapping[str, Any]] | None = None,
        targets: Mapping[tuple[str | None, str], str | None] | None = None,
        next_cycle_at: str | None = None,
        offline: bool = False,
        rerun: Sequence[str] = ("comfywatchman", "--run-cycle"),
    ) -> None:
        self.root, self.python = root, python
        self.disabled = {} if disabled is None else disabled
        self.targets = {} if targets is None else targets
        self.next_cycle_at, self.offline, self.rerun = next_cycle_at, offline, rerun

    @property
    def custom_nodes(self) -> str:
        return posixpath.join(self.root, "custom_nodes")


def step(
    tool: str, argv: Sequence[str], note: str = "", cwd: str | None = None, shell: str | None = None
) -> dict[str, Any]:
    """Return one command step: ``shell`` is the line to paste (``cd CWD && ...`` when a folder is needed)."""
    line = shell if shell is not None else shlex.join(argv)
    if cwd is not None:
        line = f"cd {shlex.quote(cwd)} && {line}"
    return {"tool": tool, "argv": list(argv), "cwd": cwd, "shell": line, "note": note}


def token_for(url: str | None, gated: bool) -> dict[str, Any] | None:
    """Return the token a download from ``url`` needs (its environment variable and why), or None."""
    host = (urlsplit(url).hostname or "").lower() if url else ""
    if host == "civitai.com" or host.endswith(".civitai.com"):
        return {"env": CIVITAI_TOKEN, "required": False, "why": "Civitai refuses many downloads without an API key"}
    if gated and host.endswith("huggingface.co"):
        return {"env": HF_TOKEN, "required": True, "why": "gated repository: accept its terms on the Hub first"}
    return None


def hf_parts(url: str) -> tuple[str, str, str] | None:
    """Return ``(repo_id, revision, path in the repo)`` of a Hub resolve URL, or None for any other URL."""
    match = _HF_RESOLVE.match(url)
    if match is None:
        return None
    return match.group(1), match.group(2), unquote(match.group(3))


def download_commands(
    url: str, target: str, token: Mapping[str, Any] | None, root: str, limit: int = 3
) -> list[list[dict[str, Any]]]:
    """Return the ways to download ``url`` to the file ``target``, preferred first (each a list of steps), the
    first ``limit`` of them.

    ``hf download`` when the Hub file lands exactly at ``target`` (a file at the repo's top whose name is the
    target's), else ``curl``; ``comfy model download`` as another way when the target is inside ``root``.
    """
    directory, filename = posixpath.split(target)
    ways: list[list[dict[str, Any]]] = []
    parts = hf_parts(url)
    if parts is not None and parts[2] == filename:
        argv = ["hf", "download", parts[0], parts[2], "--local-dir", directory]
        if parts[1] != "main":
            argv += ["--revision", parts[1]]
        ways.append([step("hf", argv, "huggingface_hub's CLI; reads HF_TOKEN")])
    argv = ["curl", "-L", "--fail", "--create-dirs", "-o", target]
    shell = shlex.join(argv)
    if token is not None:
        header = f"Authorization: Bearer ${token['env']}"
        argv += ["-H", header]
        shell += f' -H "{header}"'  # double quotes: the shell expands the variable, the report never holds it
    ways.append([step("curl", [*argv, url], shell=f"{shell} {shlex.quote(url)}")])
    if len(ways) >= limit:
        return ways
    if directory == root or directory.startswith(root.rstrip("/") + "/"):
        relative = posixpath.relpath(directory, root)
        argv = ["comfy", "--workspace", root, "model", "download", "--url", url, "--relative-path", relative]
        ways.append([step("comfy", [*argv, "--filename", filename], "comfy-cli")])
    return ways


def merge_hf(argvs: Sequence[Sequence[str]]) -> list[str]:
    """Return one ``hf download REPO FILE1 FILE2 ... --local-dir DIR`` from several that differ only by file."""
    first = list(argvs[0])
    return [*first[:3], *(argv[3] for argv in argvs), *first[4:]]


def hf_batch_key(argv: Sequence[str]) -> tuple[str, ...] | None:
    """Return what ``hf download`` commands must share to be merged (all but the file), or None for others."""
    if len(argv) < 6 or argv[0] != "hf":
        return None
    return (*argv[:3], *argv[4:])


def registry_id(*entries: Mapping[str, Any]) -> str | None:
    """Return the Comfy Registry id the first of ``entries`` (a missing-node entry, a pack) carries as
    ``registry_id`` or ``cnr_id`` (what ComfyUI saves in a node's properties), or None.

    ComfyUI-Manager's custom-node-list.json is not used: its ``id`` is Manager's own short name for many packs
    (``vhs`` where the registry has ``comfyui-videohelpersuite``), which ``comfy node install`` does not know.
    """
    for entry in entries:
        for key in ("registry_id", "cnr_id"):
            value = entry.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def install_commands(pack: Mapping[str, Any], facts: InstallFacts, pack_id: str | None) -> list[list[dict[str, Any]]]:
    """Return the ways to install a missing pack, preferred first: ``comfy node install`` by its registry id
    ``pack_id`` when it has one, and the git clone into ``custom_nodes`` with its requirements in ComfyUI's
    Python."""
    ways: list[list[dict[str, Any]]] = []
    if pack_id is not None:
        argv = ["comfy", "--workspace", facts.root, "node", "install", pack_id]
        ways.append([step("comfy", argv, "comfy-cli: installs the pack and its requirements")])
    repo = pack.get("repo")
    if not isinstance(repo, str) or not repo:
        return ways
    if repo.endswith(".py"):  # a single-file pack is one module dropped into custom_nodes
        ways.append([step("curl", ["curl", "-LO", repo], "a single-file pack", cwd=facts.custom_nodes)])
        return ways
    folder = repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    python = facts.python or "python"
    requirements = posixpath.join(facts.custom_nodes, folder, "requirements.txt")
    where = "ComfyUI's Python" if facts.python else "the Python ComfyUI runs with"
    ways.append(
        [
            step("git", ["git", "clone", repo], cwd=facts.custom_nodes),
            step("pip", [python, "-m", "pip", "install", "-r", requirements], f"when the pack has one; {where}"),
        ]
    )
    return ways


def enable_commands(name: str, facts: InstallFacts) -> list[list[dict[str, Any]]]:
    """Return the ways to re-enable the disabled pack ``name``: move it back where ComfyUI loads it (out of
    ``.disabled/`` or without the ``.disabled`` suffix), or ``comfy node enable``."""
    ways: list[list[dict[str, Any]]] = []
    entry = facts.disabled.get(name)
    if entry is not None:
        source = str(entry["path"])
        if entry.get("disabled_by") == "disabled_folder":
            # Manager keeps a version after '@' in .disabled/ (pack@1_0_2); the enabled folder has none.
            destination = posixpath.join(facts.custom_nodes, posixpath.basename(source).split("@", 1)[0])
        else:
            destination = source.removesuffix(".disabled")
        ways.append([step("mv", ["mv", source, destination])])
    ways.append([step("comfy", ["comfy", "--workspace", facts.root, "node", "enable", name], "comfy-cli")])
    return ways


def search_commands(facts: InstallFacts) -> list[list[dict[str, Any]]]:
    """Return the way to search now instead of waiting for the next cycle: one cycle, online."""
    return [[step("comfywatchman", list(facts.rerun), "one cycle now; the search needs the network")]]
