"""One way for tests to get a Config: the real defaults, with a test's overrides layered on top and validated
by the real loader (so a test cannot build a config the tool itself would refuse)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfywatchman.config import Config, UserDirs, load


def config_with(
    home: Path,
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    **flags: Any,
) -> Config:
    """Return the validated Config of ``config/default.toml`` + ``overrides``, with ``home`` as the home.

    ``secrets`` are credentials as the environment would give them (``{"HF_TOKEN": ...}``); ``env`` holds
    any other variable; nothing is read from the machine's environment, and the user folders (default
    secrets file, data folder) are under ``home/user``. ``flags`` are the command-line flags
    (``comfyui_root``, ``offline``). Raise ConfigError when the overrides are invalid.
    """
    return load(
        env={**(env or {}), **(secrets or {})},
        flags={"home": home, **flags},
        cwd=home,
        overrides=overrides,
        dirs=UserDirs(home / "user" / "data", home / "user" / "config"),
    )
