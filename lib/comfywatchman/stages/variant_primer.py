"""The variants on disk of the files workflows miss, looked for by the scan as it makes their entries.

Verify lists, for every missing file, the installed files that are another precision, quantisation, version or
format of it (``comfy.variants``). On a first cycle, or after the model cache changed, it looks for all of them
at once after the search, on one core: at 8,000 workflows that is some 35,000 files against 80,000 installed
names. The scan meets each missing file as it makes the entry naming it, while its workers keep the other core
busy, and the answer depends only on the file's folder, name and loader and on the model cache: so a scan that
makes many entries (``wanted``) looks them up as it goes (``VariantPrimer``) and leaves the answers in
``state/verify_variants.bin`` for verify, keyed by the model cache's size and mtime (``basis``). Verify takes an
answer from there only for that very model cache, and looks for any other itself.

The file is a cache, safe to lose: written whole through a rename, with a checksum; one that is torn, of another
format or Python, or of another model cache is not read.
"""

from __future__ import annotations

import logging
import marshal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts, catalogue
from comfywatchman.comfy.variants import VariantIndex
from comfywatchman.stages import cache_files
from comfywatchman.stages.verify_inputs import FORMAT, INPUTS, _stat_key

logger = logging.getLogger(__name__)

# Bump when what is kept changes; marshal's format is the running Python's.
_TAG = f"verify-variants-1/{sys.implementation.cache_tag}/marshal-{marshal.version}".encode()

# (folder, name as first written, loader) of a missing file -> its variants (``VariantIndex.variants``).
Primed = dict[tuple[str | None, str, str | None], list[dict[str, Any]]]


def basis(state: Path) -> str:
    """Return what the variants of missing files are found under: the model cache as it is now (its size and
    mtime stand for its content: it is rewritten only when that changes), and verify's format."""
    return artifacts.content_hash({"format": FORMAT, "model_cache": _stat_key(state / "model_cache.json")})


def wanted(state: Path) -> bool:
    """Return whether verify will look for the variants of every missing file this cycle: its last memo of them
    (``verify_inputs.json``) is missing or of another model cache. Only a hint: read without validation, and
    any doubt says yes (the cost of a wrong answer is time, never a wrong variant)."""
    try:
        previous = orjson.loads((state / INPUTS).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return True
    last = previous.get("variants") if isinstance(previous, dict) else None
    return not (isinstance(last, dict) and last.get("basis") == basis(state))


class VariantPrimer:
    """Looks up the variants of each missing file of the entries the scan makes, in scan order, as verify would
    (the first spelling and loader met of each file, active ones only unless inactive nodes count), and keeps
    them for verify (``save``). Nothing here fails the scan: a lookup that fails stops the looking, and verify
    looks for the rest itself."""

    def __init__(self, state: Path, model_cache: Mapping[str, Any], count_inactive: bool) -> None:
        self.path = catalogue.in_state(state, "verify_variants")
        self.basis = basis(state)
        self.index = VariantIndex.from_cache(model_cache)
        self.count_inactive = count_inactive
        self.found: Primed = {}
        self._seen: set[tuple[str | None, str]] = set()
        self._stopped = False

    def taking(self, take: Callable[[Any], list[Any]]) -> Callable[[Any], list[Any]]:
        """Return ``take`` (``verify.verify_part``: its last item the entry's missing files) that also looks up
        the variants of the files it lists."""

        def take_and_look(entry: Any) -> list[Any]:
            part = take(entry)
            self.add(part[4])
            return part

        return take_and_look

    def add(self, missing: list[list[Any]]) -> None:
        """Look up the variants of ``missing`` (``[folder, name, active, loader, lookup key]`` each, as
        ``verify.verify_part`` lists them) not met before."""
        if self._stopped:
            return
        try:
            for folder, name, active, loader, name_key in missing:
                if not (active or self.count_inactive):  # not verify's to look up (unless inactive ones count)
                    continue
                key = (folder, name_key)
                if key in self._seen:
                    continue
                self._seen.add(key)
                self.found[(folder, name, loader)] = self.index.variants(name, folder, loader)
        except Exception as exc:  # a scan never fails for a hint: verify looks for what is not here
            logger.debug("variants not looked up during the scan: %s", exc, exc_info=True)
            self._stopped = True

    def save(self) -> None:
        """Write what was found for verify (nothing when nothing was looked up)."""
        if not self.found:
            return
        try:
            body = marshal.dumps((self.basis, [[*key, value] for key, value in self.found.items()]))
            cache_files.write_checked(self.path, _TAG, body)
        except (OSError, ValueError) as exc:
            logger.warning("%s: cannot be written (%s); verify looks for the variants itself", self.path, exc)


def read(state: Path, wanted_basis: str) -> Primed:
    """Return the variants the scan looked up (``VariantPrimer``) under the model cache ``wanted_basis``, or
    none when there are none for it (missing, torn, of another format, Python or model cache)."""
    path = catalogue.in_state(state, "verify_variants")
    try:
        body = cache_files.read_checked(path, _TAG)
        if body is None:
            return {}
        found_basis, rows = marshal.loads(body)
    except (OSError, ValueError, EOFError, TypeError) as exc:
        logger.debug("%s: not read (%s)", path, exc)
        return {}
    if found_basis != wanted_basis:
        return {}
    return {(folder, name, loader): value for folder, name, loader, value in rows}
