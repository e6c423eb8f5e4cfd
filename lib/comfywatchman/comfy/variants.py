"""Alternatives already on disk: installed files that are another precision, quantisation, version or format
of a missing file (``flux1-dev_fp16.safetensors`` wanted, ``flux1-dev_fp8_e4m3fn.safetensors`` installed).

A variant is a suggestion for a person, never a match: an fp8 file is not the fp16 one, and a GGUF file needs
another loader. Matching is by a key (the file's base name without extension, precision, quantisation and
version tokens): one dict per folder type maps each key to its installed files, so finding the variants of
every missing file costs one pass over the model cache, not a comparison of every pair.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from comfywatchman.comfy.folders import MODEL_EXTENSIONS
from comfywatchman.workflow import names

# Separators authors use interchangeably (``flux1-dev`` and ``flux1_dev``); compared as one.
_SEPARATORS = re.compile(r"[-_.\s]+")
# Precision tokens, longest first so ``fp8_e4m3fn_scaled`` is taken whole (names are separator-normalised).
_PRECISION = (
    r"fp8_e4m3fn_scaled|fp8_e4m3fn_fast|fp8_e4m3fn|fp8_e5m2_scaled|fp8_e5m2|fp8_scaled|fp8mixed|fp8|"
    r"fp16|bf16|fp32|f16|f32|nvfp4|mxfp4|fp4|int8|int4|nf4"
)
# GGUF quantisation types (llama.cpp names: Q4_K_S, Q8_0, Q5_K_M, Q6_K, IQ4_XS, ...).
_QUANT = r"q[1-8]_k_[sml]|q[1-8]_k|q[1-8]_[01]|iq[1-4]_(?:xxs|xs|s|m|nl)|q[1-8]"
_TOKEN = re.compile(rf"(?:^|_)(?P<tok>{_PRECISION}|{_QUANT})(?=_|$)")
_ASCII_DIGITS = frozenset("0123456789")
_VERSION = re.compile(r"_(?P<tok>v\d+(?:_\d+)*)$")
GGUF = ".gguf"
# Core loader -> the ComfyUI-GGUF (city96) loader that reads the same kind of file from a .gguf.
GGUF_LOADERS = {
    "UNETLoader": "UnetLoaderGGUF",
    "CLIPLoader": "CLIPLoaderGGUF",
    "DualCLIPLoader": "DualCLIPLoaderGGUF",
    "TripleCLIPLoader": "TripleCLIPLoaderGGUF",
    "QuadrupleCLIPLoader": "QuadrupleCLIPLoaderGGUF",
}
CORE_LOADERS = {gguf: core for core, gguf in GGUF_LOADERS.items()}
# Which loader a folder's files go through when the workflow does not say (a declaration-only reference).
FOLDER_LOADER = {"diffusion_models": "UNETLoader", "text_encoders": "CLIPLoader"}
MAX_VARIANTS = 5
# A folder asked about this many times at most is scanned per file rather than indexed: a scan costs about a
# sixth of indexing (the filter, not the split, for most names).
SCAN_MAX = 4


_new_tuple = tuple.__new__


class NameParts(NamedTuple):
    """A model file name split into what identifies the model and what only describes this copy of it (a
    named tuple: tens of thousands are made per cycle, and a tuple is made several times faster than a
    frozen dataclass)."""

    key: str  # separator-normalised, case-folded base name without extension and descriptor tokens
    extension: str  # ".safetensors", ".gguf", ... (case-folded), or "" when not a model extension
    precision: tuple[str, ...]  # precision and quantisation tokens, in name order
    version: str | None


def split_name(name: str) -> NameParts:
    """Return the parts of ``name`` (as a workflow or the cache writes it; any subfolder is ignored)."""
    base = names.basename(name)
    stem, dot, ext = base.rpartition(".")
    extension = "." + ext.casefold() if dot else ""
    if extension not in MODEL_EXTENSIONS:
        extension, stem = "", base
    folded = stem.casefold()
    # Separator runs to one "_", none at the ends (``_SEPARATORS``): with plain string methods for a name of
    # printable ASCII without spaces (its only separators are then "-", "_" and "."), five times faster than
    # the substitution, which the verify of a large install makes for a hundred thousand names.
    text = folded.replace("-", "_").replace(".", "_")
    if not (text.isascii() and text.isprintable()) or " " in text:
        text = _SEPARATORS.sub("_", folded).strip("_")
    elif "__" in text:
        text = "_".join([piece for piece in text.split("_") if piece])
    else:
        text = text.strip("_")
    tokens: tuple[str, ...] = ()
    if not _ASCII_DIGITS.isdisjoint(text):  # every token holds an ASCII digit: the others need no split
        # One pass: split on the tokens (the one group) gives the text between them and the tokens in turn,
        # what a substitution by "" with a callback collecting them gives, without a call per token.
        pieces = _TOKEN.split(text)
        if len(pieces) > 1:
            tokens = tuple(pieces[1::2])
            text = "".join(pieces[0::2]).strip("_")
    version = None
    found = _VERSION.search(text) if "_v" in text else None
    if found is not None and found.start() > 0:
        version = found.group("tok").replace("_", ".")  # v0_9_5 -> v0.9.5, as people write versions
        text = text[: found.start()]
    return _new_tuple(NameParts, (text, extension, tokens, version))  # NameParts(...) without its Python __new__


# ``keys_of``: a model extension at the end of a line; a descriptor token after the "_" that starts its segment
# (each line is given a leading "_"; every token starts with one of the letters looked ahead for, the first
# letters of the alternatives, and of a few of their parts: a few more than needed); a version at
# the end of a line (a line's key never starts with "_", so a match here starts past its first character, as
# ``split_name`` asks).
_EXTENSION_END = re.compile(rf"\.(?:{'|'.join(sorted(re.escape(e[1:]) for e in MODEL_EXTENSIONS))})\n")
_TOKEN_FIRST = "".join(sorted({alternative[0] for alternative in f"{_PRECISION}|{_QUANT}".split("|")}))
_TOKEN_SEGMENT = re.compile(rf"_(?=[{_TOKEN_FIRST}])(?:{_PRECISION}|{_QUANT})(?=[_\n])")
_VERSION_END = re.compile(r"_v[0-9]+(?:_[0-9]+)*(?=\n)")
_COMMON_END = ".safetensors\n"  # most names' extension, taken off with a plain replace first


def keys_of(many: Sequence[str]) -> list[str]:
    """Return ``[split_name(name).key for name in many]``, worked out for all the names of printable ASCII at
    once: string methods and a few regular expressions over the names joined one a line, in place of some
    twenty steps of Python per name (the verify of a large install keys tens of thousands of names, and one
    split in a hundred matters). Any other name goes through ``split_name``."""
    plain = list(many)
    if not plain:
        return []
    joined = "\n".join(plain)
    # The base name of each (the whole name trimmed, "\\" as "/", is the base name trimmed; ASCII needs no NFC),
    # case folded (lower() for ASCII).
    lines = joined.replace("\\", "/").lower().split("\n") if joined.isascii() else []
    if len(lines) != len(plain) or not all(map(str.isprintable, lines)):
        at = [i for i, name in enumerate(plain) if name.isascii() and name.isprintable()]
        keys = [split_name(name).key for name in plain]  # replaced below for the plain names
        for i, key in zip(at, keys_of([plain[i] for i in at]), strict=True):
            keys[i] = key
        return keys
    text = "\n" + "\n".join([line.rpartition("/")[2] for line in lines]) + "\n"
    while "\n " in text or " \n" in text:  # trimmed (of spaces: the only white space a printable name holds)
        text = text.replace("\n ", "\n").replace(" \n", "\n")
    # The model extension off (the last "." of a line: no extension holds one); a line whose common one went
    # first ends with "\0" for the moment (printable names hold none), so that no second extension goes too.
    text = _EXTENSION_END.sub("\n", text.replace(_COMMON_END, "\0\n")).replace("\0", "")
    # Separator runs to one "_", none at either end of a line; then each line starts with "_", so that a token
    # (which starts a segment) is always found after a "_", as ``_TOKEN`` finds it after "_" or at the start.
    text = text.replace("-", "_").replace(".", "_").replace(" ", "_")
    while "__" in text:
        text = text.replace("__", "_")
    text = text.replace("\n_", "\n").replace("_\n", "\n").replace("\n", "\n_")
    # Tokens off: what is left of a line starts with "_" (the one put there, or the one after a first token)
    # and never ends with one (a token's own "_" goes with it), as ``strip("_")`` leaves it; then the version.
    text = _TOKEN_SEGMENT.sub("", text).replace("\n_", "\n")
    text = _VERSION_END.sub("", text)
    return text[1:-1].split("\n")


def differences(wanted: NameParts, have: NameParts) -> list[str]:
    """Return, in words, how ``have`` differs from ``wanted`` (precision, quantisation, version, format)."""
    out = []
    if wanted.precision != have.precision:
        out.append(f"precision {'_'.join(wanted.precision) or 'unmarked'} -> {'_'.join(have.precision) or 'unmarked'}")
    if wanted.version != have.version:
        out.append(f"version {wanted.version or 'unmarked'} -> {have.version or 'unmarked'}")
    if wanted.extension != have.extension:
        out.append(f"format {wanted.extension or 'none'} -> {have.extension or 'none'}")
    return out


def loader_note(wanted: NameParts, have: NameParts, folder: str | None, node_type: str | None) -> str | None:
    """Return what must change in the workflow's loader to use the variant, or None when the same loader
    reads it: a .gguf file needs a ComfyUI-GGUF loader, and a non-GGUF one the core loader."""
    if (wanted.extension == GGUF) == (have.extension == GGUF):
        return None
    loader = node_type or FOLDER_LOADER.get(folder or "")
    if have.extension == GGUF:
        target = GGUF_LOADERS.get(loader or "")
        named = f"{target} (ComfyUI-GGUF)" if target else "a GGUF loader of ComfyUI-GGUF"
        return f"a .gguf file needs {named} instead of {loader or 'the current loader'}"
    core = CORE_LOADERS.get(loader or "") or FOLDER_LOADER.get(folder or "")
    named = core or "the core loader for this folder"
    return f"not a .gguf file: it loads with {named} instead of {loader or 'the GGUF loader'}"


class VariantIndex:
    """Folder type -> name key -> the model cache's entry of each installed file with that key (``keys_of``);
    its name split into its parts (``split_name``) only when its key is looked up (``parts``).

    A folder type is indexed the first time a missing file of it is looked up (``pending`` holds the model
    cache's folders not indexed yet): a cycle where a few files went missing keys the names of their
    folders only."""

    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = ("by_key", "expected", "parts", "pending")

    by_key: dict[str, dict[str, list[Mapping[str, Any]]]]
    pending: dict[str, Mapping[str, Any]]
    #: Folder type -> how many files will be looked up in it (``expect``): a folder asked about at most
    #: ``SCAN_MAX`` times is scanned for each file with a cheap filter instead of indexed whole.
    expected: dict[str, int]
    #: ``(folder, key)`` -> what ``installed`` gives for it, once worked out.
    parts: dict[tuple[str, str], list[tuple[str, int, NameParts]]]

    def __init__(
        self,
        by_key: dict[str, dict[str, list[Mapping[str, Any]]]] | None = None,
        pending: dict[str, Mapping[str, Any]] | None = None,
        expected: dict[str, int] | None = None,
        parts: dict[tuple[str, str], list[tuple[str, int, NameParts]]] | None = None,
    ) -> None:
        self.by_key = {} if by_key is None else by_key
        self.pending = {} if pending is None else pending
        self.expected = {} if expected is None else expected
        self.parts = {} if parts is None else parts

    @classmethod
    def from_cache(cls, model_cache: Mapping[str, Any]) -> VariantIndex:
        """Return the index over a model_cache.json document (each folder indexed when first asked about)."""
        return cls(pending=dict(model_cache["folders"]))

    def folder(self, folder: str) -> dict[str, list[tuple[str, int, NameParts]]]:
        """Return name key -> installed files of ``folder`` with a model extension, with their parts (each
        name split: what ``installed`` gives for each key, for all of them)."""
        return {key: found for key in self.keyed(folder) if (found := self._split(folder, key))}

    def keyed(self, folder: str) -> dict[str, list[Mapping[str, Any]]]:
        """Return name key -> the model cache's entries (``{name, dir, size}``) of the installed files of
        ``folder`` with that key (in the folder's order, each name once: a later directory's file of the same
        name is shadowed, as in ComfyUI), keyed in one go (``keys_of``) the first time."""
        keyed = self.by_key.get(folder)
        if keyed is not None:
            return keyed
        keyed = self.by_key[folder] = {}
        group = self.pending.pop(folder, None)
        files: list[Mapping[str, Any]] = list(group["files"]) if group else []
        named = [entry["name"] for entry in files]
        if len(set(named)) < len(named):  # a name in more than one directory: the first one's file only
            first: dict[str, Mapping[str, Any]] = {}
            for entry in files:
                first.setdefault(entry["name"], entry)
            files, named = list(first.values()), list(first)
        for entry, key in zip(files, keys_of(named), strict=True):
            if key:
                same = keyed.get(key)
                if same is None:
                    keyed[key] = [entry]
                else:
                    same.append(entry)
        return keyed

    def _split(self, folder: str, key: str) -> list[tuple[str, int, NameParts]]:
        """Return the installed files of ``folder`` with the name key ``key`` and a model extension, each with
        its size and parts (split once, kept)."""
        found = self.parts.get((folder, key))
        if found is None:
            found = self.parts[(folder, key)] = [
                (name, int(entry["size"]), parts)
                for entry in self.keyed(folder).get(key, ())
                if (parts := split_name(name := entry["name"])).extension and parts.key == key
            ]
        return found

    def expect(self, counts: Mapping[str, int]) -> None:
        """Say how many files will be looked up in each folder type this time (``expected``)."""
        self.expected.update(counts)

    def _scanned(self, folder: str) -> bool:
        """Return whether ``folder`` is scanned per file (``_scan``) rather than indexed."""
        return folder not in self.by_key and self.expected.get(folder, SCAN_MAX + 1) <= SCAN_MAX

    def installed(self, folder: str, key: str) -> list[tuple[str, int, NameParts]]:
        """Return the installed files of ``folder`` whose name key is ``key`` (``folder`` order, each name
        once): from the folder's index, or, for a folder expected to be asked about a few times only, from one
        pass over its files that splits only the names that can have the key."""
        if self._scanned(folder):
            return self._scan(folder, key)
        return self._split(folder, key)

    def _scan(self, folder: str, key: str) -> list[tuple[str, int, NameParts]]:
        """Return what ``folder(folder).get(key)`` gives, without splitting every name: the first segment of
        a key is a segment of the name it comes from (a descriptor token or a version is removed whole, at
        ``_`` boundaries), so a name whose base name does not hold it cannot have the key."""
        group = self.pending.get(folder)
        if not key:
            return []  # an empty key is not indexed
        first = key.split("_", 1)[0]
        found: list[tuple[str, int, NameParts]] = []
        seen: set[str] = set()
        for entry in group["files"] if group else ():
            name = entry["name"]
            if name in seen:  # shadowed, as in ``folder``
                continue
            seen.add(name)
            # An ASCII name holds its base name's text as it is (normalising it only trims it and turns "\\" to
            # "/"), so one without the segment anywhere is passed over without working out its base name.
            if (name.isascii() and first not in name.lower()) or first not in names.basename(name).casefold():
                continue
            parts = split_name(name)
            if parts.key == key and parts.extension:
                found.append((name, int(entry["size"]), parts))
        return found

    def variants(
        self, name: str, folder: str | None, node_type: str | None = None, key: str | None = None
    ) -> list[dict[str, Any]]:
        """Return up to ``MAX_VARIANTS`` installed variants of the missing file ``name`` in ``folder``: each
        ``{installed_as, size, differs, loader_note}``, the ones a loader change is not needed for first.
        ``installed_as`` is the widget value to pick instead. Empty for an unknown folder. ``key``, when given,
        is ``name``'s key (``keys_of``): a name whose key no installed file of an indexed folder has is then
        answered without splitting it."""
        if folder is None:
            return []
        if key is not None and not self._scanned(folder):
            # Most missing files: no installed file has their key, or only the same file in another subfolder
            # has it (passed over below): answered without splitting a name.
            wanted_base = names.basename(names.normalize(name)).casefold()
            same = self.keyed(folder).get(key, ())
            if all(names.basename(entry["name"]).casefold() == wanted_base for entry in same):
                return []
        wanted = split_name(name)
        if not wanted.key:
            return []
        candidates = self.installed(folder, wanted.key)
        if not candidates:
            return []  # most missing files have no variant: nothing more to work out for them
        wanted_base = names.basename(names.normalize(name)).casefold()
        found: list[dict[str, Any]] = []
        for installed_as, size, have in candidates:
            if names.basename(installed_as).casefold() == wanted_base:
                continue  # the same file in another subfolder: the scan's own note says so
            differs = differences(wanted, have)
            if not differs:
                differs = ["spelling of the name"]
            note = loader_note(wanted, have, folder, node_type)
            found.append({"installed_as": installed_as, "size": size, "differs": differs, "loader_note": note})
        found.sort(key=lambda v: (v["loader_note"] is not None, -v["size"], v["installed_as"]))
        return found[:MAX_VARIANTS]

    def variants_of(self, asked: Sequence[tuple[str, str | None, str | None]]) -> list[list[dict[str, Any]]]:
        """Return ``variants(name, folder, node_type)`` of each ``(name, folder, node_type)`` of ``asked``, in
        turn: their keys worked out together (``keys_of``), and a name whose key no installed file of an
        indexed folder has answered with a look-up (most missing files), not a split."""
        out: list[list[dict[str, Any]]] = []
        tables: dict[str, dict[str, list[Mapping[str, Any]]] | None] = {}  # None: a scanned folder
        for (name, folder, node_type), key in zip(asked, keys_of([name for name, _, _ in asked]), strict=True):
            if folder is None:
                out.append([])
                continue
            if folder not in tables:
                tables[folder] = None if self._scanned(folder) else self.keyed(folder)
            table = tables[folder]
            if table is not None and key not in table:
                out.append([])
            else:
                out.append(self.variants(name, folder, node_type, key))
        return out


def loader_of(origins: Iterable[Mapping[str, Any]]) -> str | None:
    """Return the node type of the first loader widget naming a file (None: only declarations name it)."""
    for origin in origins:
        if origin.get("input"):
            return str(origin["node_type"])
    return None
