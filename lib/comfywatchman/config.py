"""Loading, layering and validating the configuration: the one place that reads settings and the environment.

Layers, later wins: ``config/default.toml`` < the defaults a plug-in backend declares for its own section <
the user's file (``--config`` or ``COMFYWATCHMAN_CONFIG``) < environment (``COMFYUI_ROOT``,
``COMFYWATCHMAN_HOME``, ``HF_ENDPOINT``) < command-line flags. Each layer is validated on its own against
``schemas/config.schema.json`` (extended by the plug-ins' section schemas) so that an error names the file (or
variable, or flag) it came from; then the merged result is validated whole. Every problem is reported at once,
an unknown key with the closest known one ("did you mean").

Secrets are not config keys: each backend declares which environment variables hold its credentials. They
are read from the environment, else from the secrets file (``paths.secrets_file``, by default
``secrets.env`` in the user's config folder; it must not be readable by others), else, for the Hub token,
from the file ``hf auth login`` writes. Each goes to the host of its backend's configured URL only.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from comfywatchman import artifacts, resources
from comfywatchman.errors import ConfigError

if TYPE_CHECKING:
    from comfywatchman.search.base import SearchBackend

_ENV_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")
#: Environment variables that set a config key: name -> (section, key).
ENV_KEYS: dict[str, tuple[str, str]] = {
    "COMFYUI_ROOT": ("comfyui", "root"),
    "COMFYWATCHMAN_HOME": ("paths", "home"),
    # The variable the official Hub client reads; honouring it keeps one mirror setting for both.
    "HF_ENDPOINT": ("huggingface", "endpoint"),
}
CONFIG_ENV = "COMFYWATCHMAN_CONFIG"
APP_NAME = "comfywatchman"
SECRETS_FILE_NAME = "secrets.env"
_SECRET_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


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


class ReadOnlyDict(dict[str, Any]):
    """A config section as handed to the code: a dict (JSON encoders and ``isinstance`` checks take it as one)
    that refuses every change, so no stage can alter what another reads."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("config sections are read-only; layer a change through config.load instead")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


class ReadOnlyList(list[Any]):
    """A list inside a config section: equal to, and encoded as, a list; refuses every change."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("config sections are read-only; layer a change through config.load instead")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = clear = extend = insert = pop = remove = reverse = sort = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return copy.deepcopy(list(self), memo)

    def __reduce__(self) -> Any:
        return (list, (list(self),))


def frozen(value: Any) -> Any:
    """Return ``value`` with every dict and list in it made read-only (``ReadOnlyDict``, ``ReadOnlyList``)."""
    if isinstance(value, Mapping):
        return ReadOnlyDict({key: frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return ReadOnlyList(frozen(item) for item in value)
    return value


class Layer(NamedTuple):
    """One configuration layer: where it came from and what it sets. (Named tuples, this and ``UserDirs``:
    a frozen dataclass costs a millisecond to make at every start.)"""

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
    #: Environment variable name -> its value, for every credential a backend declares and the run has.
    secrets: dict[str, Secret] = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    #: ``host:port`` -> the Secret sent there as a Bearer token (see ``credential_tokens``).
    tokens: dict[str, Secret] = field(default_factory=dict)

    _frozen: dict[str, Mapping[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def section(self, name: str) -> Mapping[str, Any]:
        """Return the config section ``name`` (e.g. ``"schedule"``), read-only to the last list and table."""
        if name not in self._frozen:
            self._frozen[name] = frozen(self.data[name])  # built once: sections are read per file in hot loops
        return self._frozen[name]

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


def _merge_into(target: dict[str, Any], override: Mapping[str, Any]) -> None:
    """Update ``target`` (made of copies only) by ``override`` as ``deep_merge`` would, copying only what
    ``override`` brings: ``deep_merge`` copies the whole of its base again for every layer."""
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def read_toml_layer(path: Path) -> Layer:
    """Return the layer read from the TOML file at ``path``. Raise ConfigError if it is missing or not TOML."""
    # Imported here: a command whose config comes from the checked cache (config_cache) parses no TOML.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib

    try:
        with open(path, "rb") as handle:
            return Layer(str(path), tomllib.load(handle))
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 text; tomllib decodes the bytes before it parses
        raise ConfigError([f"{path}: not valid TOML: not UTF-8 text (byte {exc.start})"]) from None


def environment_layer(env: Mapping[str, str]) -> Layer:
    """Return the layer the environment variables of ``ENV_KEYS`` set (secrets are not config keys)."""
    data: dict[str, Any] = {}
    for name, (section, key) in ENV_KEYS.items():
        if env.get(name):
            data.setdefault(section, {})[key] = env[name]
    return Layer("environment", data)


def schema_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``default`` of every property of an object ``schema`` (nested objects included)."""
    out: dict[str, Any] = {}
    for key, prop in (schema.get("properties") or {}).items():
        if "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
        elif prop.get("type") == "object" and prop.get("properties"):
            out[key] = schema_defaults(prop)
    return out


def config_schema(backends: Mapping[str, type[SearchBackend]]) -> tuple[dict[str, Any], list[str]]:
    """Return the config schema with every plug-in backend's section added, and an error line per plug-in
    whose section cannot be added (a name the built-in schema already uses, or no schema)."""
    schema = copy.deepcopy(artifacts.schema_document("config"))
    errors = []
    for cls in backends.values():
        section = cls.config_section
        if section is None or cls.config_schema is None:
            if section is not None and section not in schema["properties"]:
                errors.append(f"backend {cls.name!r}: config section [{section}] has no schema (config_schema)")
            continue
        if section in schema["properties"]:
            errors.append(f"backend {cls.name!r}: config section [{section}] is already taken")
            continue
        schema["properties"][section] = dict(cls.config_schema)
        schema["required"] = [*schema["required"], section]
    return schema, errors


def plugin_default_layers(backends: Mapping[str, type[SearchBackend]], schema: Mapping[str, Any]) -> list[Layer]:
    """Return one layer per backend whose section ``schema`` took from its ``config_schema`` (a plug-in's),
    holding the defaults that section schema declares."""
    layers = []
    for cls in backends.values():
        section, own = cls.config_section, cls.config_schema
        if section is not None and own is not None and schema["properties"].get(section) == dict(own):
            layers.append(Layer(f"defaults of backend {cls.name!r}", {section: schema_defaults(own)}))
    return layers


def _strip_required(schema: Any) -> Any:
    # A single layer sets only some keys, so it is checked for unknown keys and wrong types, not completeness.
    if isinstance(schema, dict):
        return {k: _strip_required(v) for k, v in schema.items() if k not in ("required", "minProperties")}
    if isinstance(schema, list):
        return [_strip_required(v) for v in schema]
    return schema


def did_you_mean(word: str, known: Any) -> str:
    """Return `` (did you mean 'x'?)`` for the known word closest to ``word``, or ``""`` when none is close."""
    import difflib  # only a config with a mistake in it gets here

    close = difflib.get_close_matches(word, [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _message(error: Any) -> str:
    if error.validator == "oneOf":
        return f"{error.instance!r} is neither a folder name nor {{folder, index}}"
    message = str(error.message)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = list((error.schema.get("properties") or {}).keys())
        unknown = [key for key in error.instance if key not in known]
        for key in unknown:
            hint = did_you_mean(key, known)
            message += (hint if len(unknown) == 1 else f"; {key!r}{hint}") if hint else ""
    return message


def _schema_errors(data: Mapping[str, Any], schema: Mapping[str, Any], source: str, fast: Any = None) -> list[str]:
    """Return an error line per violation of ``schema`` by ``data`` (each naming ``source``); ``fast``: a
    jsonschema-rs validator of ``schema`` already made (one is made when None)."""
    import jsonschema_rs

    # jsonschema-rs says yes or no in a fraction of the time; jsonschema (a tenth of a second to import, on
    # every command) words the errors when there are some. What jsonschema-rs cannot take (a TOML date) goes
    # to jsonschema, as before.
    try:
        if fast is None:
            fast = jsonschema_rs.Draft202012Validator(dict(schema), validate_formats=True)
        if fast.is_valid(data):
            return []
    except ValueError:
        pass
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    lines = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        where = artifacts.json_path(error.absolute_path)
        message = _message(error)
        lines.append(f"{source}: at '{where}': {message}" if where else f"{source}: {message}")
    return lines


def _layer_errors(layers: list[Layer], schema: Mapping[str, Any] | None = None) -> list[str]:
    """Return the error lines of every layer, each checked on its own against ``schema`` (default: the config
    schema) without its ``required`` lists: a layer sets only some keys."""
    import jsonschema_rs

    stripped = _strip_required(artifacts.schema_document("config") if schema is None else schema)
    try:
        fast = jsonschema_rs.Draft202012Validator(stripped, validate_formats=True)  # made once for every layer
    except ValueError:
        fast = None
    return [line for layer in layers for line in _schema_errors(layer.data, stripped, layer.source, fast)]


def _setting_source(layers: list[Layer], *keys: str) -> str:
    source = "config/default.toml"
    for layer in layers:
        node: Any = layer.data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            source = layer.source
    return source


def check_backends(layers: list[Layer], merged: Mapping[str, Any], known: set[str]) -> list[str]:
    """Return an error line for every backend name in ``search.backend_order`` that no backend provides."""
    source = _setting_source(layers, "search", "backend_order")
    search = merged.get("search")
    order = search.get("backend_order") if isinstance(search, Mapping) else None
    if not isinstance(order, list):
        return []  # the schema check says what is wrong with it
    return [
        f"{source}: at 'search.backend_order[{i}]': unknown backend {name!r}{did_you_mean(name, known)} "
        f"(known: {', '.join(sorted(known))})"
        for i, name in enumerate(order)
        if isinstance(name, str) and name not in known
    ]


class UserDirs(NamedTuple):
    """The user's own folders for this tool: ``data`` is the home when none is configured, ``config`` holds
    the default secrets file. ``for_user`` finds them the platform's way; tests give their own."""

    data: Path
    config: Path

    @classmethod
    def for_user(cls) -> UserDirs:
        """Return ``~/.local/share/comfywatchman`` and ``~/.config/comfywatchman`` on Linux (XDG variables
        honoured), ``~/Library/Application Support/comfywatchman`` on macOS, ``%LOCALAPPDATA%`` on Windows."""
        import platformdirs

        return cls(
            platformdirs.user_data_path(APP_NAME, appauthor=False),
            platformdirs.user_config_path(APP_NAME, appauthor=False),
        )


def read_secrets_file(path: Path, known: set[str], required: bool) -> dict[str, str]:
    """Return ``NAME=value`` pairs of the secrets file at ``path`` (``#`` comments, ``export`` and quotes allowed).

    A missing file is ``{}`` unless ``required`` (named in the config). Raise ConfigError when the file can be
    read by other users (POSIX: group or other bits set), a line is not ``NAME=value`` or a name is not a
    credential any backend uses. The values never appear in an error.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError([f"{path}: secrets file not found"]) from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read secrets file: {getattr(exc, 'strerror', None) or exc}"]) from None
    errors = []
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        errors.append(f"{path}: secrets file is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
    values, line_errors = _secret_lines(text, known)
    errors += [f"{path}: {line}" for line in line_errors]
    if errors:
        raise ConfigError(errors)
    return values


def _secret_lines(text: str, known: set[str]) -> tuple[dict[str, str], list[str]]:
    """Return the ``NAME=value`` pairs of a secrets file's ``text`` and an error per line that is not one."""
    values: dict[str, str] = {}
    errors = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _SECRET_LINE.match(line)
        if match is None:
            errors.append(f"line {number}: not NAME=value")
        elif match.group(1) not in known:
            errors.append(f"line {number}: unknown secret {match.group(1)!r}{did_you_mean(match.group(1), known)}")
        else:
            value = match.group(2)
            quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"
            values[match.group(1)] = value[1:-1] if quoted else value
    return values, errors


def hf_token_file(env: Mapping[str, str]) -> Path | None:
    """Return where ``hf auth login`` saved its token: ``$HF_TOKEN_PATH``, else ``$HF_HOME/token``, else
    ``~/.cache/huggingface/token`` (``~`` from ``HOME``/``USERPROFILE``; None when neither is set)."""
    if env.get("HF_TOKEN_PATH"):
        return Path(env["HF_TOKEN_PATH"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "token"
    home = env.get("HOME") or env.get("USERPROFILE")
    return Path(home) / ".cache" / "huggingface" / "token" if home else None


def _read_token_file(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None  # no login saved (or unreadable): the Hub is asked without a token, as before


#: Where one credential a backend declares goes: its variables (first set wins), the saved token file read
#: when none is set (``"huggingface"`` or None), and the URL its backend's section configures (its host is
#: where the secret goes; "" for nowhere). Plain data, so the config cache (``config_cache``) keeps it without
#: importing any backend.
Route = tuple[tuple[str, ...], str | None, str]


def _credential_value(
    variables: tuple[str, ...], token_file: str | None, values: Mapping[str, str], env: Mapping[str, str]
) -> str | None:
    """Return the value of a credential: the first of its ``variables`` set, else its saved ``token_file``."""
    name = next((n for n in variables if values.get(n)), None)
    if name is not None:
        return values[name]
    if token_file == "huggingface":
        return _read_token_file(hf_token_file(env))
    return None


def credential_routes(backends: Mapping[str, type[SearchBackend]], merged: Mapping[str, Any]) -> list[Route]:
    """Return the Route of every credential the backends declare, in the backends' order, each going to the
    host of the URL its backend's section of ``merged`` configures."""
    routes: list[Route] = []
    for cls in backends.values():
        section = merged.get(cls.config_section or "") or {}
        for credential in cls.credentials:
            routes.append((tuple(credential.env), credential.token_file, str(section.get(credential.url_key) or "")))
    return routes


def route_names(routes: list[Route]) -> set[str]:
    """Return every environment variable name the credentials of ``routes`` are read from."""
    return {name for variables, _, _ in routes for name in variables}


def resolve_credentials(
    routes: list[Route], values: Mapping[str, str], env: Mapping[str, str]
) -> tuple[dict[str, Secret], dict[str, Secret]]:
    """Return ``(secrets by variable name, secrets by host)`` for the credentials of ``routes``.

    ``values`` holds the environment and the secrets file, the environment winning. A credential takes the
    first of its variables that is set (the Hub's, the ``hf auth login`` token file after them) and goes to
    the host of its route's URL; an empty URL sends it nowhere.
    """
    by_name = {name: Secret(values[name]) for name in route_names(routes) if values.get(name)}
    by_host: dict[str, Secret] = {}
    for variables, token_file, url in routes:
        value = _credential_value(variables, token_file, values, env)
        if not value:
            continue
        name = next((n for n in variables if values.get(n)), variables[0])
        secret = by_name.setdefault(name, Secret(value))
        if url:
            from comfywatchman.search.http import host_of

            by_host.setdefault(host_of(url), secret)
    return by_name, by_host


def credentials(
    backends: Mapping[str, type[SearchBackend]],
    merged: Mapping[str, Any],
    values: Mapping[str, str],
    env: Mapping[str, str],
) -> tuple[dict[str, Secret], dict[str, Secret]]:
    """Return ``(secrets by variable name, secrets by host)`` for every credential the backends declare
    (``resolve_credentials`` of their ``credential_routes``)."""
    return resolve_credentials(credential_routes(backends, merged), values, env)


def _flag_layer(flags: Mapping[str, Any]) -> Layer:
    data: dict[str, Any] = {}
    if flags.get("comfyui_root") is not None:
        data.setdefault("comfyui", {})["root"] = str(flags["comfyui_root"])
    if flags.get("home") is not None:
        data.setdefault("paths", {})["home"] = str(flags["home"])
    if flags.get("offline"):
        data.setdefault("search", {})["offline"] = True
    return Layer("command line", data)


def _secret_values(
    merged: Mapping[str, Any],
    known: set[str],
    env: Mapping[str, str],
    cwd: Path,
    dirs: UserDirs,
) -> dict[str, str]:
    named = str(merged["paths"]["secrets_file"])
    path = expand_path(named, env, cwd) if named else dirs.config / SECRETS_FILE_NAME
    from_file = read_secrets_file(path, known, required=bool(named))
    # The environment wins: a variable set for one run overrides the file kept for unattended runs.
    return {**from_file, **{name: env[name] for name in known if env.get(name)}}


def _all_errors(layers: list[Layer], merged: dict[str, Any], schema: Mapping[str, Any], known: set[str]) -> list[str]:
    """Return every problem of the layers (each named by its source), of the merged result when the layers
    are fine, and every unknown backend name: all at once, not one kind after another is fixed."""
    errors = _layer_errors(layers, schema)
    if not errors:
        errors = _schema_errors(merged, schema, "merged configuration")
    return errors + check_backends(layers, merged, known)


def user_file(config_file: Path | None, env: Mapping[str, str]) -> Path | None:
    """Return the user's config file: ``config_file``, else ``COMFYWATCHMAN_CONFIG``, else None."""
    return config_file or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)


class Checked(NamedTuple):
    """The valid configuration before anything of the run is derived from it: the merged layers, each
    layer's source, and where each credential goes. The config cache (``config_cache``) keeps it."""

    merged: dict[str, Any]
    layers: tuple[str, ...]
    routes: list[Route]


def check(
    config_file: Path | None,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> Checked:
    """Return the layers of the default file, the plug-ins' defaults, the user's file, ``overrides``, ``env``
    and ``flags`` merged and validated, as :func:`load` describes. Raise ConfigError listing every problem."""
    from comfywatchman.search.registry import all_backends

    backends = all_backends()
    schema, errors = config_schema(backends)
    layers = [read_toml_layer(resources.DEFAULT_CONFIG), *plugin_default_layers(backends, schema)]
    found = user_file(config_file, env)
    if found is not None:
        layers.append(read_toml_layer(found))
    if overrides:
        layers.append(Layer("overrides", copy.deepcopy(dict(overrides))))
    layers += [environment_layer(env), _flag_layer(flags)]
    merged: dict[str, Any] = {}
    for layer in layers:
        _merge_into(merged, layer.data)
    errors += _all_errors(layers, merged, schema, {n for n, c in backends.items() if not c.answers_first})
    if errors:
        raise ConfigError(errors)
    return Checked(merged, tuple(layer.source for layer in layers), credential_routes(backends, merged))


def assemble(checked: Checked, env: Mapping[str, str], cwd: Path, dirs: UserDirs | None = None) -> Config:
    """Return the Config of the valid ``checked`` layers: the ComfyUI root and home they name (relative to
    ``cwd``, ``dirs`` for what none names; default ``UserDirs.for_user()``) and the secrets this run has
    (environment, secrets file, token file). Raise ConfigError for a secrets file that is not right."""
    merged = checked.merged
    root_text = merged["comfyui"]["root"]
    using_demo = not root_text
    comfyui_root = resources.DEMO_COMFYUI_ROOT if using_demo else expand_path(root_text, env, cwd)
    home_text = merged["paths"]["home"]
    dirs = dirs or UserDirs.for_user()
    home = expand_path(home_text, env, cwd) if home_text else dirs.data
    values = _secret_values(merged, route_names(checked.routes), env, cwd, dirs)
    secrets, tokens = resolve_credentials(checked.routes, values, env)
    return Config(
        data=merged,
        comfyui_root=comfyui_root,
        using_demo=using_demo,
        home=home,
        offline=bool(merged["search"]["offline"]),
        secrets=secrets,
        layers=checked.layers,
        tokens=tokens,
    )


def load(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    dirs: UserDirs | None = None,
) -> Config:
    """Return the validated Config from the default file, ``config_file``, ``overrides``, ``env`` and ``flags``.

    ``flags`` may hold ``comfyui_root``, ``home`` and ``offline`` (None meaning not given). ``overrides`` is a
    layer on top of the user's file (tests use it to change a few keys of the real defaults). ``dirs`` are the
    user's folders (default: ``UserDirs.for_user()``). Raise
    ConfigError listing every problem, each naming the file, variable or flag and the key, if anything is
    invalid.
    """
    env = os.environ if env is None else env
    return assemble(check(config_file, env, flags or {}, overrides), env, cwd or Path.cwd(), dirs)


def expand_path(text: str, env: Mapping[str, str], cwd: Path, comfyui_root: Path | None = None) -> Path:
    """Return ``text`` as an absolute path: ``{comfyui_root}``, ``~`` and ``$VARS`` expanded, relative to ``cwd``."""
    if comfyui_root is not None:
        text = text.replace("{comfyui_root}", str(comfyui_root))
    # $NAME and ${NAME} from the given environment; unknown variables are left as written, like os.path.
    text = _ENV_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)
    path = Path(text).expanduser()
    return path if path.is_absolute() else (cwd / path)
