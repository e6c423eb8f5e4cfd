"""Pure helpers about model file names: validity, search terms, folder types and references (AIR, URLs).

Nothing here touches the network or the disk, so every rule is table-tested.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from comfywatchman.comfy import folders
from comfywatchman.workflow import names as workflow_names

# The scanner's model extensions, as a tuple for ``str.endswith``.
MODEL_EXTENSIONS = tuple(sorted(folders.MODEL_EXTENSIONS))

# Names so common that equal names say nothing about equal files (diffusers folders, transformers dumps):
# an exact match on one of these is a candidate, never proof.
GENERIC_BASENAMES = frozenset(
    {
        "model.safetensors",
        "model.bin",
        "model.ckpt",
        "model.pt",
        "model.pth",
        "pytorch_model.bin",
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.bin",
        "diffusion_pytorch_model.fp16.safetensors",
        "model.fp16.safetensors",
        "adapter_model.safetensors",
        "pytorch_lora_weights.safetensors",
    }
)

# Suffixes that name a variant of the same model rather than the model: versions, precisions, quantisations.
# Compiled at first use (``_suffix``): the verify stage imports this module for ``lookup_key`` in every cycle,
# and a cycle where nothing changed never strips a suffix.
_SUFFIX_PATTERN = r"""[-_. ](?:
        v\d+(?:[._-]\d+)*[a-z]?          # _v1_5, -v2.0, _v3a
      | \d+(?:\.\d+)+                    # _1.0
      | fp(?:8|16|32)(?:[_-]?e[45]m[23](?:fn)?(?:uz)?)?  # fp16, fp8_e4m3fn
      | e[45]m[23](?:fn)?(?:uz)?         # e4m3fn on its own
      | bf16 | f16 | f32 | nf4 | int[48] | fp4 | mxfp4 | nvfp4
      | i?q\d(?:_k)?(?:_(?:[sml]|xs|xxs|0|1|nl))?   # Q4_K_M, Q8_0, IQ4_XS
      | scaled | pruned | full | ema(?:only)? | noema | mixed
    )$"""


@cache
def _suffix() -> re.Pattern[str]:
    """Return the compiled ``_SUFFIX_PATTERN``."""
    return re.compile(_SUFFIX_PATTERN, re.IGNORECASE | re.VERBOSE)


# ComfyUI folder type -> Civitai model types to ask for. A folder missing here searches every type.
CIVITAI_TYPES: dict[str, tuple[str, ...]] = {
    "checkpoints": ("Checkpoint",),
    "loras": ("LORA", "LoCon", "DoRA"),
    "vae": ("VAE",),
    "embeddings": ("TextualInversion",),
    "controlnet": ("Controlnet",),
    "t2i_adapter": ("Controlnet",),
    "upscale_models": ("Upscaler",),
    "latent_upscale_models": ("Upscaler",),
    "hypernetworks": ("Hypernetwork",),
    "text_encoders": ("TextEncoder", "CLIP"),
    "clip": ("TextEncoder", "CLIP"),
    # Flux/Wan-style UNets are mostly uploaded as "Checkpoint" on Civitai.
    "diffusion_models": ("Checkpoint", "UNet"),
    "unet": ("Checkpoint", "UNet"),
    "clip_vision": ("CLIPVision",),
    "animatediff_models": ("MotionModule",),
    "animatediff_motion_lora": ("LORA",),
    "ultralytics": ("Detection",),
    "detection": ("Detection",),
    "poses": ("Poses",),
}

# Civitai ``files[].type`` -> the ComfyUI folders a file of that kind goes in, whatever its model's type (a
# Checkpoint version can carry its VAE or text encoder as extra files). The generic kinds below leave the
# decision to the model's type (``CIVITAI_TYPES``); the non-model kinds go in no model folder at all.
CIVITAI_FILE_TYPES: dict[str, tuple[str, ...]] = {
    "vae": ("vae",),
    "text encoder": ("text_encoders", "clip"),
    "unet": ("diffusion_models", "unet"),
    "diffusion model": ("diffusion_models", "unet"),
    "clipvision": ("clip_vision",),
    "vision encoder": ("clip_vision",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "upscaler": ("upscale_models", "latent_upscale_models"),
    "enhancement lora": ("loras",),
    "config": ("configs",),
    "training data": (),
    "archive": (),
    "workflow": (),
}
GENERIC_FILE_TYPES = frozenset({"", "model", "pruned model", "negative", "other"})


def _folder_key(folder: str | None) -> str:
    return (folder or "").strip("/").split("/")[0].lower()


def civitai_misfit(folder: str | None, model_type: str | None, file_type: str | None) -> str | None:
    """Return why a Civitai file (its model's ``type``, its ``files[].type``) cannot be the file a loader of
    ComfyUI ``folder`` wants, or None when it fits.

    One table for every way a Civitai answer is reached (name search, hash, AIR/URL, an agent's tool call):
    a LoRA is not a checkpoint, whatever its name. A folder the tables do not know (a custom pack's) accepts
    every model file.
    """
    key = _folder_key(folder)
    kind = (file_type or "").strip().casefold()
    if kind not in GENERIC_FILE_TYPES and kind in CIVITAI_FILE_TYPES:
        homes = CIVITAI_FILE_TYPES[kind]
        if key in homes or (homes and key not in CIVITAI_TYPES and key not in _ALL_FILE_HOMES):
            return None
        return f"a Civitai {file_type} file, which does not go in {key or 'a model folder'}/"
    allowed = CIVITAI_TYPES.get(key)
    if allowed is None or (model_type or "").casefold() in {t.casefold() for t in allowed}:
        return None
    return f"its Civitai model type is {model_type}, which does not go in {key}/ (wanted: {', '.join(allowed)})"


_ALL_FILE_HOMES = frozenset(home for homes in CIVITAI_FILE_TYPES.values() for home in homes)


# One set of rules for file names, shared with the scanner: what the scan refuses, no backend is asked about.
# Memoised: a search asks each of them several times per distinct name (the stage, every offline source, the
# download queue), and an install has tens of thousands of names. Bounded, for a --scheduler process that
# lives for months.
NAME_MEMO = 1 << 17
normalise = lru_cache(maxsize=NAME_MEMO)(workflow_names.normalize)
basename = lru_cache(maxsize=NAME_MEMO)(workflow_names.basename)
invalid_filename_reason = lru_cache(maxsize=NAME_MEMO)(workflow_names.invalid_reason)
lookup_key = lru_cache(maxsize=NAME_MEMO)(workflow_names.lookup_key)


def strip_extension(name: str) -> str:
    """Return ``name``'s basename without a known model extension (other dots are kept: ``sd_xl_1.0``)."""
    base = basename(name)
    lower = base.lower()
    for ext in MODEL_EXTENSIONS:
        if lower.endswith(ext) and len(base) > len(ext):
            return base[: -len(ext)]
    return base


def strip_variant_suffixes(stem: str) -> str:
    """Return ``stem`` without trailing version/precision/quantisation suffixes (``x_v1_5_fp16`` -> ``x``).

    Stops before the name would become shorter than three characters, so ``v1_5`` alone stays itself.
    """
    current = stem
    suffix = _suffix()
    while True:
        match = suffix.search(current)
        if not match or match.start() < 3:
            return current
        current = current[: match.start()]


def query_cascade(name: str) -> list[str]:
    """Return the search terms for ``name``, most specific first, without duplicates.

    The name without extension, then without variant suffixes. Civitai's full-text search rarely knows the
    full file name of a renamed file, so the shorter term often is the one that hits.
    """
    terms: list[str] = []
    stem = strip_extension(name).strip()
    for term in (stem, strip_variant_suffixes(stem)):
        term = term.strip(" -_.")
        if term and term.casefold() not in (t.casefold() for t in terms):
            terms.append(term)
    return terms


def civitai_types(folder: str | None) -> tuple[str, ...]:
    """Return the Civitai model ``types`` to filter a search by for ComfyUI ``folder`` (empty: no filter)."""
    if not folder:
        return ()
    return CIVITAI_TYPES.get(folder.strip("/").split("/")[0].lower(), ())


def same_basename(a: str, b: str) -> bool:
    """Return whether ``a`` and ``b`` name the same file: exact basename, NFC, case-insensitive."""
    return basename(a).casefold() == basename(b).casefold()


def is_generic_basename(name: str) -> bool:
    """Return whether ``name``'s basename is too common to identify a file by itself."""
    return basename(name).casefold() in GENERIC_BASENAMES


def variant_key(name: str) -> str:
    """Return the comparison key of a name with extension and variant suffixes removed, case-folded.

    Two names with the same key are variants of one model (``x_fp16`` and ``x_fp8``): a candidate worth
    showing, never a match.
    """
    return re.sub(r"[-_. ]+", "_", strip_variant_suffixes(strip_extension(name))).casefold()


# NamedTuples, not frozen dataclasses: every cycle's process makes these classes, and a dataclass costs it
# ~0.4 ms to make (Python 3.11), a NamedTuple a tenth of that.
class CivitaiRef(NamedTuple):
    """A Civitai model or version named by an AIR URN or a Civitai URL."""

    model_id: int | None = None
    version_id: int | None = None
    file_id: int | None = None


class HfRef(NamedTuple):
    """A file (or repo) on a HuggingFace-style hub named by a URL."""

    repo_id: str
    revision: str | None = None
    path: str | None = None


_AIR_PATTERN = (
    r"^urn:air:(?P<ecosystem>[\w.-]+):(?P<type>[\w.-]+):(?P<source>[\w.-]+):(?P<id>[^@:.\s]+)"
    r"(?:@(?P<version>[^:.\s]+))?(?::(?P<layer>[^.\s]+))?(?:\.(?P<format>\w+))?$"
)


@cache
def _air() -> re.Pattern[str]:
    """Return the compiled ``_AIR_PATTERN`` (at first use, as ``_suffix``)."""
    return re.compile(_AIR_PATTERN, re.IGNORECASE)


def parse_air(text: str) -> CivitaiRef | None:
    """Return the Civitai model/version ids of an AIR URN (``urn:air:sdxl:lora:civitai:328553@368189``).

    Return None when ``text`` is not an AIR or names a source other than Civitai.
    """
    match = _air().match(text.strip())
    if not match or match.group("source").lower() != "civitai":
        return None
    model, version = match.group("id"), match.group("version")
    if not model.isdigit() or (version is not None and not version.isdigit()):
        return None
    return CivitaiRef(model_id=int(model), version_id=int(version) if version else None)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


# Civitai URL paths that name an id right after them: what the id is ("download" is a version id whose
# ?fileId= names the file).
_CIVITAI_ROUTES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("api", "download", "models"), "download"),
    (("api", "v1", "model-versions"), "version"),
    (("api", "v1", "models"), "model"),
    (("model-versions",), "version"),
)


def _first(query: dict[str, list[str]], key: str) -> str | None:
    """Return the first value of ``key`` in a parsed query string, or None."""
    values = query.get(key)
    return values[0] if values else None


def parse_civitai_url(url: str, hosts: tuple[str, ...] = ("civitai.com", "civitai.red")) -> CivitaiRef | None:
    """Return the ids a Civitai URL names, or None when it is not a Civitai model/version/download URL.

    Understands ``/models/{id}[/slug][?modelVersionId=V]``, ``/api/v1/models/{id}``,
    ``/api/v1/model-versions/{V}``, ``/model-versions/{V}`` and ``/api/download/models/{V}[?fileId=F]``.
    ``hosts`` are the host names accepted (``www.`` is allowed in front).
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = (parts.hostname or "").lower().removeprefix("www.")
    if parts.scheme not in ("http", "https") or host not in {h.lower().removeprefix("www.") for h in hosts}:
        return None
    query = parse_qs(parts.query)
    segments = [s for s in parts.path.split("/") if s]
    for prefix, kind in _CIVITAI_ROUTES:
        if tuple(segments[: len(prefix)]) == prefix and len(segments) > len(prefix):
            ident = _int_or_none(segments[len(prefix)])
            if kind == "model":
                return CivitaiRef(model_id=ident)
            file_id = _int_or_none(_first(query, "fileId")) if kind == "download" else None
            return CivitaiRef(version_id=ident, file_id=file_id)
    if segments[:1] == ["models"] and len(segments) >= 2 and segments[1].isdigit():
        version = _int_or_none(_first(query, "modelVersionId"))
        return CivitaiRef(model_id=int(segments[1]), version_id=version)
    return None


def parse_hf_url(url: str, hosts: tuple[str, ...] = ("huggingface.co", "hf.co")) -> HfRef | None:
    """Return the repo, revision and path of a hub URL (``/{owner}/{repo}/resolve|blob/{rev}/{path}``).

    A bare repo URL (``/{owner}/{repo}``) gives an HfRef without revision and path. Return None for other
    hosts, dataset/space URLs and anything else.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = (parts.netloc or "").lower().removeprefix("www.")
    if parts.scheme not in ("http", "https") or host not in {h.lower() for h in hosts}:
        return None
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if len(segments) < 2 or segments[0] in ("datasets", "spaces", "api"):
        return None
    repo_id = f"{segments[0]}/{segments[1]}"
    if len(segments) >= 5 and segments[2] in ("resolve", "blob", "raw"):
        return HfRef(repo_id, segments[3], "/".join(segments[4:]))
    if len(segments) == 2:
        return HfRef(repo_id)
    return None
