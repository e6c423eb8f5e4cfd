"""Loading, layering and validating the configuration.

Layers, later wins: ``config/default.toml`` < the user's file (``--config`` or ``COMFYWATCHMAN_CONFIG``) <
environment (``COMFYUI_ROOT``, ``COMFYWATCHMAN_HOME``, ``HF_ENDPOINT``) < command-line flags. Each layer is
validated on its own against ``schemas/config.schema.json`` so that an error names the file (or variable, or
flag) it came from; then the merged result is validated whole. Every problem is reported at once.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, resources
from comfywatchman.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_ENV_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")
SECRET_ENV = ("CIVITAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


class Secret:
    """A credential that never shows itself in a repr, a log line, a report or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself; only HTTP code sending it to its own host may call this."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Layer:
    """One configuration layer: where it came from and what it sets."""

    source: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Config:
    """The validated, merged configuration plus what was derived from it for this run."""

    data: dict[str, Any]
    comfyui_root: Path
    using_demo: bool
    home: Path
    offline: bool
    secrets: dict[str, Secret] = field(default_factory=dict)
    layers: tuple[str, ...] = ()

    def section(self, name: str) -> dict[str, Any]:
        """Return the config section ``name`` (e.g. ``"schedule"``)."""
        return self.data[name]

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def reports_dir(self) -> Path:
        return self.home / "output" / "reports" / "status"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override``; tables merge key by key, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_toml_layer(path: Path) -> Layer:
    """Return the layer read from the TOML file at ``path``. Raise ConfigError if it is missing or not TOML."""
    try:
        with open(path, "rb") as handle:
            return Layer(str(path), tomllib.load(handle))
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def environment_layer(env: Mapping[str, str]) -> Layer:
    """Return the layer the environment variables set (non-secret ones only)."""
    data: dict[str, Any] = {}
    if env.get("COMFYUI_ROOT"):
        data.setdefault("comfyui", {})["root"] = env["COMFYUI_ROOT"]
    if env.get("COMFYWATCHMAN_HOME"):
        data.setdefault("paths", {})["home"] = env["COMFYWATCHMAN_HOME"]
    if env.get("HF_ENDPOINT"):
        # The variable the official Hub client reads; honouring it keeps one mirror setting for both.
        data.setdefault("huggingface", {})["endpoint"] = env["HF_ENDPOINT"]
    return Layer("environment", data)


def _strip_required(schema: Any) -> Any:
    # A single layer sets only some keys, so it is checked for unknown keys and wrong types, not completeness.
    if isinstance(schema, dict):
        return {k: _strip_required(v) for k, v in schema.items() if k not in ("required", "minProperties")}
    if isinstance(schema, list):
        return [_strip_required(v) for v in schema]
    return schema


def _layer_errors(layer: Layer) -> list[str]:
    import jsonschema

    full = artifacts.validator("config").schema
    partial = jsonschema.Draft202012Validator(_strip_required(full))
    lines = []
    for error in sorted(partial.iter_errors(layer.data), key=lambda e: list(map(str, e.path))):
        where = artifacts.json_path(error.absolute_path)
        message = error.message
        if error.validator == "oneOf":
            message = f"{error.instance!r} is neither a folder name nor {{folder, index}}"
        lines.append(f"{layer.source}: at '{where}': {message}" if where else f"{layer.source}: {message}")
    return lines


def _setting_source(layers: list[Layer], *keys: str) -> str:
    source = "config/default.toml"
    for layer in layers:
        node: Any = layer.data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            source = layer.source
    return source


def check_backends(layers: list[Layer], merged: dict[str, Any], known: set[str]) -> list[str]:
    """Return an error line for every backend name in ``search.backend_order`` that no backend provides."""
    source = _setting_source(layers, "search", "backend_order")
    return [
        f"{source}: at 'search.backend_order[{i}]': unknown backend {name!r} (known: {', '.join(sorted(known))})"
        for i, name in enumerate(merged["search"]["backend_order"])
        if name not in known
    ]


def load(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Return the validated Config from the default file, ``config_file``, ``env`` and ``flags``.

    ``flags`` may hold ``comfyui_root``, ``home`` and ``offline`` (None meaning not given). Raise ConfigError
    listing every problem, each naming the file, variable or flag and the key, if anything is invalid.
    """
    env = os.environ if env is None else env
    flags = flags or {}
    cwd = cwd or Path.cwd()
    layers = [read_toml_layer(resources.DEFAULT_CONFIG)]
    user_file = config_file or (Path(env["COMFYWATCHMAN_CONFIG"]) if env.get("COMFYWATCHMAN_CONFIG") else None)
    if user_file is not None:
        layers.append(read_toml_layer(user_file))
    layers.append(environment_layer(env))
    flag_data: dict[str, Any] = {}
    if flags.get("comfyui_root") is not None:
        flag_data.setdefault("comfyui", {})["root"] = str(flags["comfyui_root"])
    if flags.get("home") is not None:
        flag_data.setdefault("paths", {})["home"] = str(flags["home"])
    if flags.get("offline"):
        flag_data.setdefault("search", {})["offline"] = True
    layers.append(Layer("command line", flag_data))

    errors = [line for layer in layers for line in _layer_errors(layer)]
    if errors:
        raise ConfigError(errors)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer.data)
    errors = artifacts.schema_errors(merged, "config", "merged configuration")
    if not errors:
        from comfywatchman.search.registry import known_backends

        errors = check_backends(layers, merged, known_backends())
    if errors:
        raise ConfigError(errors)

    root_text = merged["comfyui"]["root"]
    using_demo = not root_text
    comfyui_root = resources.DEMO_COMFYUI_ROOT if using_demo else expand_path(root_text, env, cwd)
    home_text = merged["paths"]["home"]
    home = expand_path(home_text, env, cwd) if home_text else cwd
    secrets = {name: Secret(env[name]) for name in SECRET_ENV if env.get(name)}
    return Config(
        data=merged,
        comfyui_root=comfyui_root,
        using_demo=using_demo,
        home=home,
        offline=bool(merged["search"]["offline"]),
        secrets=secrets,
        layers=tuple(layer.source for layer in layers),
    )


def expand_path(text: str, env: Mapping[str, str], cwd: Path, comfyui_root: Path | None = None) -> Path:
    """Return ``text`` as an absolute path: ``{comfyui_root}``, ``~`` and ``$VARS`` expanded, relative to ``cwd``."""
    if comfyui_root is not None:
        text = text.replace("{comfyui_root}", str(comfyui_root))
    # $NAME and ${NAME} from the given environment; unknown variables are left as written, like os.path.
    text = _ENV_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)
    path = Path(text).expanduser()
    return path if path.is_absolute() else (cwd / path)
