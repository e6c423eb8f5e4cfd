"""ComfyUI's model folder types and where each one's files live (as ``folder_paths.py`` and
``utils/extra_config.py`` define them)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from comfywatchman import regular_files

logger = logging.getLogger(__name__)

MODEL_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft", ".gguf", ".onnx"})
CONFIG_EXTENSIONS = frozenset({".yaml", ".yml", ".json"})

# Folder type -> the directories under models/ that ComfyUI reads for it, in ComfyUI's order (see _save_order).
CORE_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "configs": ("configs",),
    "loras": ("loras",),
    "vae": ("vae",),
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("unet", "diffusion_models"),
    "clip_vision": ("clip_vision",),
    "style_models": ("style_models",),
    "embeddings": ("embeddings",),
    "diffusers": ("diffusers",),
    "vae_approx": ("vae_approx",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "gligen": ("gligen",),
    "upscale_models": ("upscale_models",),
    "latent_upscale_models": ("latent_upscale_models",),
    "hypernetworks": ("hypernetworks",),
    "photomaker": ("photomaker",),
    "classifiers": ("classifiers",),
    "model_patches": ("model_patches",),
    "audio_encoders": ("audio_encoders",),
    "background_removal": ("background_removal",),
    "frame_interpolation": ("frame_interpolation",),
    "geometry_estimation": ("geometry_estimation",),
    "optical_flow": ("optical_flow",),
    "detection": ("detection",),
}
LEGACY_NAMES = {"unet": "diffusion_models", "clip": "text_encoders", "t2i_adapter": "controlnet"}
# Keys of an extra_model_paths.yaml section that are settings, not folder types.
_ENV_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")
SECTION_SETTINGS = frozenset({"base_path", "is_default", "download_model_base"})


def canonical_folder(name: str) -> str:
    """Return the folder type ``name`` stands for (legacy ``unet``/``clip`` mapped to today's names)."""
    return LEGACY_NAMES.get(name, name)


class ModelPaths:
    """Folder type -> ordered directories (the first is where ComfyUI saves), plus what went wrong reading."""

    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = ("declared_by", "folders", "problems", "sources")

    folders: dict[str, list[Path]]
    sources: list[str]
    problems: list[str]
    # Directory -> (extra_model_paths.yaml, section) that declared it, for findings that name the typo.
    declared_by: dict[Path, tuple[str, str]]

    def __init__(
        self,
        folders: dict[str, list[Path]] | None = None,
        sources: list[str] | None = None,
        problems: list[str] | None = None,
        declared_by: dict[Path, tuple[str, str]] | None = None,
    ) -> None:
        self.folders = {} if folders is None else folders
        self.sources = [] if sources is None else sources
        self.problems = [] if problems is None else problems
        self.declared_by = {} if declared_by is None else declared_by

    def add(self, folder: str, path: Path, first: bool = False) -> None:
        """Add ``path`` for ``folder`` (at the front when ``first``), once."""
        paths = self.folders.setdefault(canonical_folder(folder), [])
        if path in paths:
            if first:
                paths.remove(path)
                paths.insert(0, path)
            return
        paths.insert(0, path) if first else paths.append(path)


def walk_once(
    top: Path | str, onerror: Callable[[OSError], None] | None = None
) -> Iterator[tuple[str, list[str], list[str]]]:
    """Yield ``(folder, dir names, file names)`` like ``os.walk(top, followlinks=True)``, top-down, but
    each real directory (device, inode) once only.

    Symlinks to files and folders are followed, as ComfyUI follows them, yet a loop (a link to a parent,
    two links to each other) is never entered again: os.walk lists every file of a one-link loop 41 times
    and never ends with two. The caller may prune ``dir names`` in place to skip folders; unreadable
    folders are left out, as os.walk leaves them, and handed to ``onerror`` when given.
    """
    seen: set[tuple[int, int]] = set()
    pending = [os.fspath(top)]
    while pending:
        folder = pending.pop()
        try:
            stat = os.stat(folder)
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as error:
            if onerror is not None:
                onerror(error)
            continue
        dirs: list[str] = []
        files: list[str] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows a symlink
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
        yield folder, dirs, files
        pending.extend(os.path.join(folder, name) for name in reversed(dirs))


def model_paths(root: Path, extra_configs: Sequence[Path] = ()) -> ModelPaths:
    """Return every model directory of the install at ``root``, by folder type, in ComfyUI's order.

    Core folders under ``root/models``; any other folder found there is a folder type of its own (packs add
    ipadapter, ultralytics, ...); then ``root/extra_model_paths.yaml`` and ``extra_configs``.
    """
    result = ModelPaths()
    models = root / "models"
    for folder, dirs in CORE_FOLDERS.items():
        for name in _save_order(models, folder, dirs):
            result.add(folder, models / name)
    try:
        entries = sorted(os.scandir(models), key=lambda e: e.name)
    except OSError:
        entries = []
    known_dirs = {d for dirs in CORE_FOLDERS.values() for d in dirs}
    for entry in entries:
        if entry.is_dir() and entry.name not in known_dirs and not entry.name.startswith("."):
            result.add(entry.name, Path(entry.path))
    for config in [root / "extra_model_paths.yaml", *extra_configs]:
        if config.exists() or config != root / "extra_model_paths.yaml":
            read_extra_model_paths(config, result)
    return result


def _save_order(models: Path, folder: str, dirs: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``dirs`` in ComfyUI's order, except that the directory named like the folder type goes first
    when it exists, or when none of the others does.

    The first directory is where a download goes. ComfyUI lists ``unet`` before ``diffusion_models``, but the
    templates, the docs and ComfyUI-Manager put diffusion models in ``models/diffusion_models/``, where users
    look for them (``text_encoders`` is already first in ComfyUI's own order). Sections marked ``is_default``
    in extra_model_paths.yaml are put in front of these later, so they still win.
    """
    if folder not in dirs or dirs[0] == folder:
        return dirs
    others = tuple(d for d in dirs if d != folder)
    if (models / folder).is_dir() or not any((models / d).is_dir() for d in others):
        return (folder, *others)
    return dirs


def _yaml_problem(exc: Exception) -> str:
    """Return a YAML error in one line: what is wrong and where ("expected ',' or ']', but got '<scalar>' at
    line 3 column 3"), as PyYAML's marked errors say it over several lines."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if not problem:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML ({problem}{where})"


def read_extra_model_paths(config: Path, into: ModelPaths, env: Mapping[str, str] | None = None) -> None:
    """Add the directories the extra_model_paths.yaml at ``config`` declares to ``into``.

    Problems (missing file, bad YAML, wrong shapes) are recorded in ``into.problems`` naming the file; the
    rest of the file is still used.
    """
    import yaml  # only an install with an extra_model_paths.yaml pays for it

    env = os.environ if env is None else env
    try:
        # A regular file only (a pipe would wait forever), and UTF-8 text, as ComfyUI reads it.
        data: Any = yaml.safe_load(regular_files.read_regular(config).decode("utf-8"))
    except FileNotFoundError:
        into.problems.append(f"{config}: extra model paths file not found")
        return
    except UnicodeDecodeError as exc:
        into.problems.append(f"{config}: cannot read extra model paths: not UTF-8 text (byte {exc.start})")
        return
    except OSError as exc:
        into.problems.append(f"{config}: cannot read extra model paths: {exc.strerror or exc}")
        return
    except yaml.YAMLError as exc:
        into.problems.append(f"{config}: cannot read extra model paths: {_yaml_problem(exc)}")
        return
    into.sources.append(str(config))
    if data is None:
        return
    if not isinstance(data, dict):
        into.problems.append(f"{config}: expected sections (a mapping) at the top level")
        return
    for section, conf in data.items():
        if conf is None:
            continue
        if not isinstance(conf, dict):
            into.problems.append(f"{config}: section {section!r} is not a mapping; ignored")
            continue
        _read_section(config, section, conf, into, env)


def _read_section(config: Path, section: Any, conf: dict[Any, Any], into: ModelPaths, env: Mapping[str, str]) -> None:
    """Add the folders of one ``section`` of the extra_model_paths.yaml at ``config`` to ``into`` (its
    ``base_path`` resolved against the file's folder); a value that is not text is recorded as a problem."""
    base = conf.get("base_path")
    base_path: Path | None = None
    if base is not None:
        base_path = Path(_expand(str(base), env)).expanduser()
        if not base_path.is_absolute():
            base_path = config.parent / base_path
    first = bool(conf.get("is_default"))
    for folder, value in conf.items():
        if folder in SECTION_SETTINGS:
            continue
        if not isinstance(value, str):
            into.problems.append(f"{config}: {section}.{folder} should be a path or lines of paths; ignored")
            continue
        lines = [line.strip() for line in value.split("\n") if line.strip()]
        # is_default sections go first; keep their own order by inserting in reverse.
        for line in reversed(lines) if first else lines:
            path = Path(_expand(line, env)).expanduser()
            if not path.is_absolute():
                path = (base_path / path) if base_path else (config.parent / path)
            into.add(folder, Path(os.path.normpath(path)), first=first)
            into.declared_by.setdefault(Path(os.path.normpath(path)), (str(config), str(section)))


def _expand(text: str, env: Mapping[str, str]) -> str:
    # os.path.expandvars reads os.environ only; expand from the given mapping so tests can pass their own.
    return _ENV_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)


def suffixes_of(folder: str) -> frozenset[str]:
    """Return the lower-case suffixes (``.safetensors``) of the files that count as models of ``folder``."""
    return CONFIG_EXTENSIONS if folder == "configs" else MODEL_EXTENSIONS


def is_model_file(name: str, folder: str) -> bool:
    """Return whether a file called ``name`` counts as a model of ``folder`` (configs hold .yaml files)."""
    # rpartition, not os.path.splitext: this runs once per file of the install (tens of thousands).
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in suffixes_of(folder)
