"""Civitai: the REST client and the search backend.

Facts it is built on (``external-apis.md`` §A): search pages by cursor only (``page`` with ``query`` is a
400); hashes are upper-case hex; archived/taken-down models drop their files; non-LoRA files are renamed on
upload (``{camelCaseModelName}_{version}.{ext}``), so a checkpoint's workflow name often differs from
Civitai's and only a hash can prove identity; ``/api/v1/images?imageId=N`` has returned unrelated images,
so nothing reads it without ``validate_civitai_image_response``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple, cast

from comfywatchman.search import names
from comfywatchman.search.base import (
    Candidate,
    Credential,
    Evidence,
    ModelQuery,
    SearchBackend,
    SearchContext,
    SearchResult,
    Status,
    access_details,
)
from comfywatchman.search.http import HttpClient, RemoteError, host_of

logger = logging.getLogger(__name__)

PUBLIC_SITE = "https://civitai.com"  # where a user opens a model's page (a mirror's API is no web page)
BULK_HASH_LIMIT = 100  # the bulk by-hash endpoint takes at most 100 hashes per call
INACTIVE_MODES = frozenset({"archived", "takendown"})


def civitai_client(context: SearchContext) -> CivitaiClient:
    """Return a client for the ``[civitai]`` section's ``base_url`` over the context's shared HTTP client."""
    settings = context.config.section("civitai")
    http = context.http or HttpClient.from_config(context.config)
    return CivitaiClient(http, str(settings["base_url"]), bool(settings["include_nsfw"]))


# A NamedTuple and a plain class, not dataclasses: every cycle's process makes these classes, and a dataclass
# costs it 0.2 to 0.4 ms to make (Python 3.11).
class ImageLookup(NamedTuple):
    """The outcome of ``validate_civitai_image_response``: the image when it is the one asked for."""

    status: Status  # FOUND or NOT_FOUND
    image: dict[str, Any] | None
    message: str


def validate_civitai_image_response(image_id: int | str, payload: Any, url: str = "") -> ImageLookup:
    """Given the requested ``image_id`` and the ``/api/v1/images`` payload, return that image if it is it.

    An empty ``items`` list or a first item whose ``id`` differs from ``image_id`` is NOT_FOUND with a message
    that says which: Civitai has answered ``?imageId=N`` with unrelated images (civitai issue 1494) and with
    empty lists (issue 1329), and trusting either put the wrong generation metadata into a report. The
    requested id, the returned id and ``url`` are logged at DEBUG for traceability.
    """
    items = payload.get("items") if isinstance(payload, Mapping) else None
    first = items[0] if isinstance(items, list) and items and isinstance(items[0], Mapping) else None
    returned = first.get("id") if first is not None else None
    logger.debug("civitai image check: requested id=%s returned id=%s url=%s", image_id, returned, url)
    if first is None:
        return ImageLookup(Status.NOT_FOUND, None, f"Civitai returned no image for id {image_id}")
    if str(returned) != str(image_id):
        return ImageLookup(
            Status.NOT_FOUND,
            None,
            f"Civitai returned image {returned} when image {image_id} was requested; answer discarded",
        )
    return ImageLookup(Status.FOUND, dict(first), f"image {image_id} confirmed")


class CivitaiClient:
    """The Civitai REST API v1 calls this project makes, over the shared ``HttpClient``.

    Methods return parsed JSON (None for a 404) and raise RemoteError for every other failure.
    """

    def __init__(self, http: HttpClient, base_url: str, include_nsfw: bool = True) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.include_nsfw = include_nsfw

    @property
    def host(self) -> str:
        """Return the ``host:port`` this client talks to."""
        return host_of(self.base_url)

    def _get(self, path: str, params: Any = None) -> dict[str, Any] | None:
        url = f"{self.base_url}{path}"
        status, body = self.http.get_json(url, params=params)
        if status == 404:
            return None
        if status >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            raise RemoteError(
                f"{self.host} answered HTTP {status} for {path}" + (f": {message}" if message else ""),
                "http",
                self.host,
                status,
            )
        return cast("dict[str, Any]", body)

    def search_models(
        self, query: str, types: tuple[str, ...] = (), limit: int = 100, max_pages: int = 3
    ) -> Iterator[dict[str, Any]]:
        """Yield the models ``GET /api/v1/models`` finds for ``query``, following ``nextCursor`` only.

        ``page`` is never sent: with ``query`` Civitai refuses it (400). Stops after ``max_pages`` pages or
        when ``metadata.nextCursor`` is absent.
        """
        params: list[tuple[str, Any]] = [("query", query), ("limit", max(1, min(100, limit)))]
        params += [("types", t) for t in types]
        if self.include_nsfw:
            # Civitai hides NSFW models by default; many LoRAs in real workflows are among them.
            params.append(("nsfw", "true"))
        cursor: str | None = None
        for _page in range(max(1, max_pages)):
            body = self._get("/api/v1/models", params + ([("cursor", cursor)] if cursor else []))
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise RemoteError(f"{self.host}: /api/v1/models answered without an items list", "bad_json", self.host)
            yield from (item for item in body["items"] if isinstance(item, dict))
            cursor = (body.get("metadata") or {}).get("nextCursor")
            if not cursor:
                return

    def get_model(self, model_id: int) -> dict[str, Any] | None:
        """Return ``GET /api/v1/models/{id}``, or None when Civitai has no such model."""
        return self._get(f"/api/v1/models/{int(model_id)}")

    def get_version(self, version_id: int) -> dict[str, Any] | None:
        """Return ``GET /api/v1/model-versions/{id}``, or None when there is no such version."""
        return self._get(f"/api/v1/model-versions/{int(version_id)}")

    def version_by_hash(self, file_hash: str) -> dict[str, Any] | None:
        """Return the version with a file of ``file_hash`` (SHA256, AutoV1/2/3, CRC32, BLAKE3), or None."""
        clean = "".join(ch for ch in file_hash if ch.isalnum())
        return self._get(f"/api/v1/model-versions/by-hash/{clean.upper()}")

    def versions_by_hashes(self, sha256s: list[str]) -> list[dict[str, Any]]:
        """Return the versions of many SHA256 (``POST .../by-hash``, 100 per call; unmatched dropped)."""
        found: list[dict[str, Any]] = []
        unique = list(dict.fromkeys(h.upper() for h in sha256s if h))
        for start in range(0, len(unique), BULK_HASH_LIMIT):
            url = f"{self.base_url}/api/v1/model-versions/by-hash"
            response = self.http.request("POST", url, json=unique[start : start + BULK_HASH_LIMIT])
            body = self.http.json_of(response, required=response.ok)
            if not response.ok:
                raise RemoteError(
                    f"{self.host} answered HTTP {response.status_code} for bulk by-hash",
                    "http",
                    self.host,
                    response.status_code,
                )
            if not isinstance(body, list):
                raise RemoteError(f"{self.host}: bulk by-hash answered without a list", "bad_json", self.host)
            found.extend(v for v in body if isinstance(v, dict))
        return found

    def get_image(self, image_id: int) -> ImageLookup:
        """Return image ``image_id``, ``/api/v1/images``, checked by ``validate_civitai_image_response``."""
        path = "/api/v1/images"
        params = {"imageId": int(image_id), "limit": 1, "withMeta": "true"}
        body = self._get(path, params)
        return validate_civitai_image_response(image_id, body or {}, f"{self.base_url}{path}?imageId={image_id}")


# -- turning Civitai objects into evidence ------------------------------------------------------------------


class FileHit:
    """One Civitai file with the model and version it belongs to."""

    __slots__ = ("file", "model", "version")

    model: dict[str, Any]
    version: dict[str, Any]
    file: dict[str, Any]

    def __init__(self, model: dict[str, Any], version: dict[str, Any], file: dict[str, Any]) -> None:
        self.model, self.version, self.file = model, version, file

    @property
    def sha256(self) -> str | None:
        value = (self.file.get("hashes") or {}).get("SHA256")
        return value.lower() if isinstance(value, str) and len(value) == 64 else None

    @property
    def size(self) -> int | None:
        kb = self.file.get("sizeKB")
        return round(float(kb) * 1024) if isinstance(kb, (int, float)) else None

    @property
    def url(self) -> str | None:
        return self.file.get("downloadUrl") or self.version.get("downloadUrl")

    @property
    def inactive(self) -> bool:
        """Archived or taken down: no download, never FOUND."""
        mode = self.model.get("mode") or (self.version.get("model") or {}).get("mode")
        return isinstance(mode, str) and mode.replace(" ", "").lower() in INACTIVE_MODES

    @property
    def model_type(self) -> str | None:
        """Return the Civitai model type (``Checkpoint``, ``LORA``, ...) of the file's model, or None."""
        value = self.model.get("type") or (self.version.get("model") or {}).get("type")
        return str(value) if value else None

    def misfit(self, folder: str | None) -> str | None:
        """Return why this file cannot go in ComfyUI ``folder`` (its model or file type), or None."""
        return names.civitai_misfit(folder, self.model_type, self.file.get("type"))

    def early_access(self, now: datetime | None) -> str | None:
        """Return why the version is in early access at ``now`` (its download answers 403 "Early Access"
        unless paid for), or None when anyone may download it.

        ``availability: EarlyAccess`` says so outright; older answers give ``earlyAccessEndsAt`` or
        ``earlyAccessTimeFrame`` (days after ``publishedAt``), which count only while in the future.
        """
        if str(self.version.get("availability") or "").casefold() == "earlyaccess":
            ends = self.version.get("earlyAccessEndsAt")
            return f"early access on Civitai{f' until {ends}' if ends else ''}"
        ends_at = _when(self.version.get("earlyAccessEndsAt"))
        days = self.version.get("earlyAccessTimeFrame")
        published = _when(self.version.get("publishedAt"))
        if ends_at is None and isinstance(days, (int, float)) and days > 0 and published is not None:
            ends_at = published + timedelta(days=float(days))
        if ends_at is not None and now is not None and ends_at > _aware(now):
            return f"early access on Civitai until {ends_at.isoformat(timespec='seconds')}"
        return None

    def page(self) -> str:
        """Return the Civitai page of this file's model version, where early access is bought."""
        model_id = self.model.get("id", self.version.get("modelId"))
        version_id = self.version.get("id")
        return f"{PUBLIC_SITE}/models/{model_id}" + (f"?modelVersionId={version_id}" if version_id else "")

    def details(self) -> dict[str, Any]:
        model_id = self.model.get("id", self.version.get("modelId"))
        return {
            "model_id": model_id,
            "model_name": self.model.get("name"),
            "model_type": self.model.get("type"),
            "version_id": self.version.get("id"),
            "version_name": self.version.get("name"),
            "base_model": self.version.get("baseModel"),
            "file_id": self.file.get("id"),
            "file_name": self.file.get("name"),
        }

    def candidate(self, evidence: Evidence, reason: str) -> Candidate:
        return Candidate(
            source="civitai",
            name=str(self.file.get("name", "")),
            url=self.url,
            evidence=evidence,
            reason=reason,
            sha256=self.sha256,
            size=self.size,
            details=self.details(),
        )


def _aware(moment: datetime) -> datetime:
    """Return ``moment`` with a time zone (UTC when it had none), so any two can be compared."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _when(value: Any) -> datetime | None:
    """Return the moment an ISO 8601 text of Civitai names (``...Z`` accepted), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def iter_files(model: Mapping[str, Any], versions: list[dict[str, Any]] | None = None) -> Iterator[FileHit]:
    """Yield every file of every version of ``model`` (or of the given ``versions``) as a FileHit."""
    for version in versions if versions is not None else model.get("modelVersions") or []:
        for file in version.get("files") or []:
            if isinstance(file, dict):
                yield FileHit(dict(model), version, file)


def version_files(version: Mapping[str, Any]) -> Iterator[FileHit]:
    """Yield the files of a model-version object (its ``model`` summary stands in for the model)."""
    model = dict(version.get("model") or {})
    model.setdefault("id", version.get("modelId"))
    yield from iter_files(model, [dict(version)])


def _hash_matches(hit: FileHit, known: str) -> bool:
    hashes = {k.lower(): str(v).lower() for k, v in (hit.file.get("hashes") or {}).items() if v}
    known = known.lower()
    return hashes.get("sha256") == known or (len(known) == 10 and hashes.get("autov2") == known)


def found_result(query: ModelQuery, hit: FileHit, evidence: Evidence, reason: str, source: str) -> SearchResult:
    """Return the FOUND result for ``hit`` (ids, sha256, size, download URL) with its evidence."""
    return SearchResult(
        name=query.name,
        type=query.folder,
        status=Status.FOUND,
        source=source,
        evidence=evidence,
        url=hit.url,
        sha256=hit.sha256,
        size=hit.size,
        reason=reason,
        details={"civitai": hit.details()},
    )


def locked_result(
    query: ModelQuery, hit: FileHit, evidence: Evidence, reason: str, source: str, why: str
) -> SearchResult:
    """Return the NEEDS_ACCESS result for ``hit``, a proven file whose version is in early access."""
    result = found_result(query, hit, evidence, f"{reason}; {why}", source)
    result.status = Status.NEEDS_ACCESS
    result.details["access"] = access_details(hit.page(), "CIVITAI_API_KEY", why)
    return result


def decide(
    query: ModelQuery,
    hits: list[FileHit],
    source: str = "civitai",
    limit: int = 8,
    now: datetime | None = None,
) -> SearchResult | None:
    """Return FOUND, NEEDS_ACCESS, UNCERTAIN or None (nothing relevant) for ``query`` given Civitai ``hits``.

    The pure policy: a hash match is FOUND; otherwise an exact, case-insensitive basename is FOUND unless the
    name is generic, the workflow declares a different sha256, or several files of that name differ. Inactive
    (archived/taken-down) models and files without a download URL are never FOUND; nor is a file whose model
    type does not fit the query's folder (``names.civitai_misfit``: at most a candidate saying so). A proven
    file in an early-access version (at ``now``) is NEEDS_ACCESS, a public one of the same proof preferred.
    Everything else that is close is a candidate with its reason.
    """
    known = query.known_sha256
    candidates = _inactive_candidates(query, hits, known) + _misfit_candidates(query, hits, known)
    # Public versions first, so an early-access copy is chosen only when no public one proves the file.
    usable = sorted(
        (h for h in hits if not h.inactive and h.url and h.misfit(query.folder) is None),
        key=lambda h: h.early_access(now) is not None,
    )
    by_hash = next((h for h in usable if _hash_matches(h, known)), None) if known else None
    if by_hash is not None:
        return _proof(query, by_hash, Evidence.HASH, "sha256 declared by the workflow matches this file", source, now)
    exact = _exact_hits(query, usable)
    doubt = _exact_doubt(query, exact, known)
    if exact and doubt is None:
        reason = "exact file name (case-insensitive) in a Civitai model version"
        return _proof(query, exact[0], Evidence.EXACT_FILENAME, reason, source, now)
    candidates += [h.candidate(Evidence.SIMILAR_NAME, doubt) for h in exact if doubt]
    candidates += _similar_candidates(
        query, usable, {c.details.get("file_id") for c in candidates}, limit - len(candidates)
    )
    if not candidates:
        return None
    return SearchResult(
        name=query.name,
        type=query.folder,
        status=Status.UNCERTAIN,
        source=source,
        evidence=Evidence.SIMILAR_NAME,
        reason=_unproven_reason(candidates),
        candidates=candidates[:limit],
    )


def _unproven_reason(candidates: list[Candidate]) -> str:
    """Return the reason of an UNCERTAIN answer: the type mismatch when that is what stops a match."""
    misfits = [c.reason for c in candidates if c.reason.startswith("same file, but ")]
    if misfits:
        return f"candidates found, none proven: {misfits[0].removeprefix('same file, but ')}"
    return "candidates found, none proven"


def _proof(
    query: ModelQuery, hit: FileHit, evidence: Evidence, reason: str, source: str, now: datetime | None
) -> SearchResult:
    """Return FOUND for a proven ``hit``, or NEEDS_ACCESS when its version is in early access."""
    why = hit.early_access(now)
    if why is not None:
        return locked_result(query, hit, evidence, reason, source, why)
    return found_result(query, hit, evidence, reason, source)


def _misfit_candidates(query: ModelQuery, hits: list[FileHit], known: str | None) -> list[Candidate]:
    """Return a candidate, never proof, for each file with the wanted name or hash whose type does not fit
    the query's folder (a LoRA of the name a checkpoint loader wants)."""
    out = []
    for hit in hits:
        why = hit.misfit(query.folder)
        if why is None or hit.inactive:
            continue
        if names.same_basename(str(hit.file.get("name", "")), query.name) or (known and _hash_matches(hit, known)):
            out.append(hit.candidate(Evidence.SIMILAR_NAME, f"same file, but {why}"))
    return out


def _inactive_candidates(query: ModelQuery, hits: list[FileHit], known: str | None) -> list[Candidate]:
    """Return a dead-end candidate for each archived/taken-down file with the wanted name or hash."""
    return [
        hit.candidate(Evidence.NONE, f"model is {hit.model.get('mode')} on Civitai: no download")
        for hit in hits
        if hit.inactive
        and (names.same_basename(hit.file.get("name", ""), query.name) or (known and _hash_matches(hit, known)))
    ]


def _exact_hits(query: ModelQuery, usable: list[FileHit]) -> list[FileHit]:
    """Return the usable files with the wanted basename, one per Civitai file id (the same file can arrive
    twice, by hash and by search)."""
    by_id = {
        id(h) if h.file.get("id") is None else h.file.get("id"): h
        for h in usable
        if names.same_basename(str(h.file.get("name", "")), query.name)
    }
    return list(by_id.values())


def _exact_doubt(query: ModelQuery, exact: list[FileHit], known: str | None) -> str | None:
    """Return why files of the exact name do not prove the wanted file, or None when the one of them does."""
    shas = {h.sha256 for h in exact}
    if known and known not in shas:
        return "same name but its sha256 differs from the one the workflow declares"
    if names.is_generic_basename(query.name):
        return "same name, but the name is too generic to prove identity"
    if len(shas) > 1 or (None in shas and len(exact) > 1):
        return f"one of {len(exact)} different files sharing this name"
    return None


def _similar_candidates(query: ModelQuery, usable: list[FileHit], seen: set[Any], room: int) -> list[Candidate]:
    """Return up to ``room`` candidates among ``usable`` not in ``seen``: other variants of the name, and
    renamed non-LoRA files of a model whose name matches."""
    key = names.variant_key(query.name)
    out: list[Candidate] = []
    for hit in usable:
        if hit.file.get("id") in seen or len(out) >= room:
            continue
        if names.variant_key(str(hit.file.get("name", ""))) == key:
            reason = "another variant of the same name (version/precision/quantisation differs)"
        elif _renamed_type(hit) and _model_matches(hit, query):
            reason = (
                "Civitai renames non-LoRA files on upload; the model name matches but no hash proves it is this file"
            )
        else:
            continue
        seen.add(hit.file.get("id"))
        out.append(hit.candidate(Evidence.SIMILAR_NAME, reason))
    return out


def _proven(
    query: ModelQuery, hits: list[FileHit], source: str, limit: int, now: datetime | None
) -> SearchResult | None:
    """Return ``decide``'s answer when it proves the file (FOUND or NEEDS_ACCESS), else None."""
    if not hits:
        return None
    result = decide(query, hits, source, limit, now)
    return result if result is not None and result.status in (Status.FOUND, Status.NEEDS_ACCESS) else None


def _renamed_type(hit: FileHit) -> bool:
    model_type = str(hit.model.get("type") or "").lower()
    return model_type not in ("lora", "locon", "dora") and hit.file.get("type") in (
        None,
        "Model",
        "Pruned Model",
    )


def _model_matches(hit: FileHit, query: ModelQuery) -> bool:
    # The renamed file is "{camelCaseModelName}_{version}": compare the model name and the query's stem with
    # separators and case removed, either way round.
    def squash(text: str) -> str:
        return "".join(ch for ch in text.casefold() if ch.isalnum())

    model = squash(str(hit.model.get("name") or ""))
    stem = squash(names.strip_variant_suffixes(names.strip_extension(query.name)))
    return bool(model and stem) and (model in stem or stem in model)


class CivitaiBackend(SearchBackend):
    """Looks a missing model up on Civitai: declared refs and hashes first, then a name-search cascade."""

    name = "civitai"
    config_section = "civitai"
    credentials = (Credential(("CIVITAI_API_KEY",), "base_url"),)
    public_hosts = ("hosts", "base_url")

    def __init__(self, context: SearchContext, client: CivitaiClient | None = None) -> None:
        super().__init__(context)
        self.client = client or civitai_client(context)

    def lookup(self, query: ModelQuery) -> SearchResult:
        """Return FOUND/UNCERTAIN/NOT_FOUND for ``query``: by declared hash, by declared refs, by name."""
        limit = int(self.settings["max_candidates"])
        hits: list[FileHit] = []
        # 1. A hash the workflow declares: one request proves or refutes.
        known = query.known_sha256
        version = self.client.version_by_hash(known) if known else None
        if version:
            hits += list(version_files(version))
            proof = _proven(query, hits, self.name, limit, self.context.now)
            if proof is not None:
                return proof
        # 2. Civitai models the workflow names itself (AIR URNs, Civitai URLs in declarations).
        for ref in self._declared_refs(query):
            hits += self._hits_for_ref(ref)
        proof = _proven(query, hits, self.name, limit, self.context.now)
        if proof is not None:
            return proof
        return self._name_search(query, hits, limit)

    def _name_search(self, query: ModelQuery, hits: list[FileHit], limit: int) -> SearchResult:
        # 3. Name search, most specific term first; stop at the first proof.
        types = names.civitai_types(query.folder)
        searched: list[str] = []
        inactive: dict[Any, dict[str, Any]] = {}
        for term in names.query_cascade(query.name):
            searched.append(term)
            for model in self.client.search_models(
                term, types, int(self.settings["page_size"]), int(self.settings["max_pages"])
            ):
                hits += list(iter_files(model))
                if FileHit(model, {}, {}).inactive and _model_matches(FileHit(model, {}, {}), query):
                    inactive[model.get("id")] = model
            result = _proven(query, hits, self.name, limit, self.context.now)
            if result is not None:
                result.details["queries"] = searched
                return result
        result = self._with_dead_ends(
            query, decide(query, hits, self.name, limit, self.context.now), list(inactive.values()), limit
        )
        if result is not None:
            result.details["queries"] = searched
            return result
        return self.result(
            query,
            Status.NOT_FOUND,
            f"no Civitai file named {query.basename} (searched: {', '.join(searched)})",
            details={"queries": searched},
        )

    def _with_dead_ends(
        self, query: ModelQuery, result: SearchResult | None, inactive: list[dict[str, Any]], limit: int
    ) -> SearchResult | None:
        # Archived/taken-down models have lost their files; a name that matches one is worth telling the user,
        # as a dead end (no URL), never as FOUND.
        dead = [
            Candidate(
                source=self.name,
                name=str(m.get("name", "")),
                url=None,
                evidence=Evidence.NONE,
                reason=f"a matching model is {m.get('mode')} on Civitai: its files are no longer offered",
                details={"model_id": m.get("id"), "mode": m.get("mode")},
            )
            for m in inactive
        ]
        if result is None and dead:
            # No source exists, so NOT_FOUND (the next backend goes on); the dead ends still say why.
            return self.result(
                query,
                Status.NOT_FOUND,
                "only archived or taken-down Civitai models match: nothing to download there",
                candidates=dead[:limit],
            )
        if result is not None:
            result.candidates += dead[: max(0, limit - len(result.candidates))]
        return result

    def _declared_refs(self, query: ModelQuery) -> list[names.CivitaiRef]:
        hosts = (*tuple(self.settings["hosts"]), host_of(self.client.base_url).split(":")[0])
        refs = []
        for decl in query.declarations:
            if not decl.url:
                continue
            ref = names.parse_air(decl.url) or names.parse_civitai_url(decl.url, hosts)
            if ref is not None:
                refs.append(ref)
        return refs

    def _hits_for_ref(self, ref: names.CivitaiRef) -> list[FileHit]:
        if ref.version_id is not None:
            version = self.client.get_version(ref.version_id)
            if version:
                return list(version_files(version))
        if ref.model_id is not None:
            model = self.client.get_model(ref.model_id)
            if model:
                return list(iter_files(model))
        return []
