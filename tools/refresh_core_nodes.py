"""Refresh ``lib/comfywatchman/data/core_nodes.txt``, the node types ComfyUI itself provides.

Sources, merged: the folder names of the ``comfyui-embedded-docs`` package (one folder per core node), and,
when given, a running ComfyUI server's ``/object_info`` restricted to nodes whose ``python_module`` is core
(``nodes`` or ``comfy_extras.*`` / ``comfy_api_nodes.*``). ComfyUI-Manager's own core list is stale and is
deliberately not used.

Usage: python tools/refresh_core_nodes.py [--object-info URL]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import requests

TARGET = Path(__file__).resolve().parents[1] / "lib" / "comfywatchman" / "data" / "core_nodes.txt"
CORE_MODULE_PREFIXES = ("nodes", "comfy_extras", "comfy_api_nodes", "comfy.")


def names_from_embedded_docs() -> set[str]:
    """Return the node names the installed comfyui-embedded-docs package documents (empty if absent)."""
    spec = importlib.util.find_spec("comfyui_embedded_docs")
    if spec is None or not spec.submodule_search_locations:
        return set()
    docs = Path(next(iter(spec.submodule_search_locations))) / "docs"
    return {p.name for p in docs.iterdir() if p.is_dir()} if docs.is_dir() else set()


def names_from_object_info(url: str) -> set[str]:
    """Return the core node names a live ComfyUI server reports at ``url`` (``.../object_info``)."""
    info = requests.get(url, timeout=30).json()
    return {
        name for name, spec in info.items() if str(spec.get("python_module", "nodes")).startswith(CORE_MODULE_PREFIXES)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object-info", help="URL of a running ComfyUI's /object_info")
    args = parser.parse_args()
    names = names_from_embedded_docs()
    if args.object_info:
        names |= names_from_object_info(args.object_info)
    if not names:
        print("no source found: pip install comfyui-embedded-docs, or pass --object-info", file=sys.stderr)
        return 1
    existing = set(TARGET.read_text().split()) if TARGET.exists() else set()
    TARGET.write_text("".join(f"{n}\n" for n in sorted(names | existing)))
    print(json.dumps({"written": str(TARGET), "count": len(names | existing), "new": len(names - existing)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
