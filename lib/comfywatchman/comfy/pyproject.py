"""The ``[project]`` table of a ``pyproject.toml`` that ComfyUI-Manager or a custom node pack ships."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from comfywatchman import regular_files


def project_table(path: Path) -> dict[str, Any]:
    """Return the ``[project]`` table of the pyproject.toml at ``path`` (empty when it has none, or one that is
    not a table). Raise OSError when it cannot be read as a regular file (a pipe would wait forever), ValueError
    when it is not TOML in UTF-8 text."""
    if sys.version_info >= (3, 11):  # imported here: a cycle where nothing changed reads no TOML
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    project = tomllib.loads(regular_files.read_regular(path).decode("utf-8")).get("project")
    return project if isinstance(project, dict) else {}
