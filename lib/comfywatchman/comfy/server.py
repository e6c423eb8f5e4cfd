"""A running ComfyUI server as the source of truth: ``GET /object_info`` lists the node types it loaded and
the file lists of its combo inputs (with extra_model_paths and pack folders already applied).

When no server answers at ``[comfyui] url`` the scan works from the files alone and says so.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from comfywatchman.workflow import names

logger = logging.getLogger(__name__)

TIMEOUT_S = 5.0
CORE_MODULE_PREFIXES = ("nodes", "comfy_extras", "comfy_api_nodes", "comfy.")


class ServerTruth:
    """What one ComfyUI server reported: node type -> module, and (type, input) -> combo file names."""

    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = ("combos", "digest", "modules", "url")

    url: str
    digest: str
    modules: dict[str, str]
    combos: dict[tuple[str, str], dict[str, str]]

    def __init__(
        self,
        url: str,
        digest: str = "",
        modules: dict[str, str] | None = None,
        combos: dict[tuple[str, str], dict[str, str]] | None = None,
    ) -> None:
        self.url, self.digest = url, digest
        self.modules = {} if modules is None else modules
        self.combos = {} if combos is None else combos

    def has_node(self, class_type: str) -> bool:
        """Return whether the server loaded ``class_type``."""
        return class_type in self.modules

    def pack_of(self, class_type: str) -> str | None:
        """Return the custom node folder that registered ``class_type``, or None for a core node."""
        module = self.modules.get(class_type, "")
        if module.startswith("custom_nodes."):
            return module.split(".", 2)[1]
        if module.startswith(CORE_MODULE_PREFIXES) or not module:
            return None
        return module.split(".", 1)[0]

    def combo_match(self, class_type: str, input_name: str, value: str) -> tuple[bool, str | None] | None:
        """Return (listed, as listed) for ``value`` in that input's combo, or None when there is no combo."""
        options = self.combos.get((class_type, input_name))
        if options is None:
            return None
        listed = options.get(names.normalize(value))
        return (listed is not None, listed)


def parse_object_info(url: str, info: Any, digest: str = "") -> ServerTruth:
    """Return the ServerTruth of an ``/object_info`` document (classic and ``COMBO`` combos both read)."""
    truth = ServerTruth(url, digest)
    if not isinstance(info, dict):
        return truth
    for class_type, spec in info.items():
        if not isinstance(spec, dict):
            continue
        truth.modules[class_type] = str(spec.get("python_module") or "")
        inputs = spec.get("input")
        if not isinstance(inputs, dict):
            continue
        for group in ("required", "optional"):
            entries = inputs.get(group)
            if not isinstance(entries, dict):
                continue
            for input_name, definition in entries.items():
                options = combo_options(definition)
                if options is not None:
                    truth.combos[(class_type, input_name)] = {names.normalize(o): o for o in options}
    return truth


def combo_options(definition: Any) -> list[str] | None:
    """Return the string options of a combo input definition, or None when it is not a combo.

    Classic: ``[["a.safetensors", ...], {...}]``; newer: ``["COMBO", {"options": [...]}]``.
    """
    if not isinstance(definition, list) or not definition:
        return None
    head = definition[0]
    if isinstance(head, list):
        return [o for o in head if isinstance(o, str)]
    if head == "COMBO" and len(definition) > 1 and isinstance(definition[1], dict):
        options = definition[1].get("options")
        if isinstance(options, list):
            return [o for o in options if isinstance(o, str)]
    return None


def is_loopback(url: str) -> bool:
    """Return whether ``url`` points at this machine (localhost or a loopback address)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def get_bytes(url: str, timeout: float) -> bytes:
    """Return the body of ``GET url`` from a ComfyUI server, at most 256 MB.

    Proxies are bypassed: the server is the user's own, usually on localhost. Raise urllib.error.HTTPError
    for an error status and another OSError when the server does not answer.
    """
    import urllib.request  # with http.client and email, only for a process that asks a server

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "comfywatchman"})
    with opener.open(request, timeout=timeout) as response:
        body: bytes = response.read(256 * 1024 * 1024)  # typeshed types opener.open's response as Any
    return body


def get_json(url: str, timeout: float) -> Any:
    """Return the JSON body of ``GET url`` (see ``get_bytes``); raise ValueError when it is not JSON."""
    return json.loads(get_bytes(url, timeout))


def fetch(url: str, timeout: float = TIMEOUT_S) -> ServerTruth | None:
    """Return the ServerTruth of the ComfyUI server at ``url``, or None (logged) when it does not answer.

    ``/object_info`` is tried, then ``/api/object_info`` (servers behind the newer frontend route both).
    Proxies are bypassed: the server is the user's own, usually on localhost.
    """
    base = url.rstrip("/")
    problem = ""
    for path in ("/object_info", "/api/object_info"):
        try:
            body = get_bytes(base + path, timeout)
            info = json.loads(body)
        except (OSError, ValueError) as exc:  # urllib's URLError and HTTPError are OSErrors
            problem = str(getattr(exc, "reason", exc))
            continue
        truth = parse_object_info(url, info, hashlib.sha256(body).hexdigest())
        if truth.modules:
            return truth
        problem = "answered without node types"
    logger.warning("%s: ComfyUI server did not answer /object_info (%s); working from the files", url, problem)
    return None
