"""The search backend interface and the values every backend speaks.

A backend is a small class with a ``name`` and one method, ``lookup(query) -> SearchResult``. The template
method ``search`` around it refuses a name that is not a file name (INVALID_FILENAME, no request), turns a
RemoteError into ERROR with the reason and any other exception into ERROR "backend crashed", so the next
backend goes on. A backend declares the config section it reads and the credentials it sends (which secret,
from which environment variable, to the host of which URL in its section); the config loader validates the
section and the HTTP client attaches the secret, neither knowing the backend. Backends, built-in or not,
register through the ``comfywatchman.backends`` entry point group (see ``registry``).

What a backend may claim is limited by the evidence ladder (strongest first):
``declared`` > ``hash`` > ``exact_filename`` > ``similar_name`` / ``llm_suggestion`` (never FOUND).
"""

from __future__ import annotations

import copy
import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from comfywatchman.search.http import RemoteError
from comfywatchman.search.names import invalid_filename_reason

if TYPE_CHECKING:
    from comfywatchman.config import Config, Secret

logger = logging.getLogger(__name__)


class Status(str, enum.Enum):
    """What is known about where a missing model can be had."""

    FOUND = "FOUND"  # proven: exact filename (case-insensitive) or a matching hash, with a download URL
    UNCERTAIN = "UNCERTAIN"  # candidates exist but none is proven; a person decides
    NOT_FOUND = "NOT_FOUND"  # every backend looked and found nothing
    ERROR = "ERROR"  # a backend failed (network, rate limit, bad answer); retried next cycle, never cached
    INVALID_FILENAME = "INVALID_FILENAME"  # the name escapes its folder or is not a file name; never looked up
    NOT_SEARCHED = "NOT_SEARCHED"  # offline, no backend could be asked, or the cycle's request budget was spent
    # The file is proven to exist but no one can download it without access first: an early-access Civitai
    # version, a gated Hub repo. Never queued; ``details["access"]`` says where access is granted and which
    # token to set.
    NEEDS_ACCESS = "NEEDS_ACCESS"


class Evidence(str, enum.Enum):
    """Why a result or candidate is believed, strongest first."""

    DECLARED = "declared"
    HASH = "hash"
    EXACT_FILENAME = "exact_filename"
    SIMILAR_NAME = "similar_name"
    LLM_SUGGESTION = "llm_suggestion"
    NONE = "none"


PROOF = (Evidence.DECLARED, Evidence.HASH, Evidence.EXACT_FILENAME)


# NamedTuples and plain classes, not dataclasses: every cycle's process makes these classes, and a dataclass
# costs it 0.2 to 0.4 ms to make (Python 3.11), a NamedTuple a tenth of that.
class Declaration(NamedTuple):
    """Where a workflow's author says a file comes from (``properties.models`` or workflow ``models``)."""

    name: str
    url: str | None = None
    directory: str | None = None
    hash: str | None = None
    hash_type: str | None = None


class ModelQuery(NamedTuple):
    """One missing model to look for: the name as the workflow writes it and the folder type it goes in."""

    name: str
    folder: str | None
    declarations: tuple[Declaration, ...] = ()
    workflows: tuple[str, ...] = ()

    @property
    def basename(self) -> str:
        """The file name without any subfolder (``SDXL/x.safetensors`` -> ``x.safetensors``)."""
        return self.name.replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def known_sha256(self) -> str | None:
        """A sha256 the workflow declares for this file, lower-case, or None."""
        for decl in self.declarations:
            if decl.hash and (decl.hash_type or "sha256").lower() == "sha256" and len(decl.hash) == 64:
                return decl.hash.lower()
        return None


class Candidate:
    """A possible source for a file, with the reason it is offered."""

    __slots__ = ("details", "evidence", "name", "reason", "sha256", "size", "source", "url")

    source: str
    name: str
    url: str | None
    evidence: Evidence
    reason: str
    sha256: str | None
    size: int | None
    details: dict[str, Any]

    def __init__(
        self,
        source: str,
        name: str,
        url: str | None,
        evidence: Evidence,
        reason: str,
        sha256: str | None = None,
        size: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.source, self.name, self.url, self.evidence, self.reason = source, name, url, evidence, reason
        self.sha256, self.size = sha256, size
        self.details = {} if details is None else details

    def to_json(self) -> dict[str, Any]:
        """Return the candidate as the JSON object the search artifact stores (``details`` a copy, as
        ``dataclasses.asdict`` made it)."""
        return {
            "source": self.source,
            "name": self.name,
            "url": self.url,
            "evidence": self.evidence.value,
            "reason": self.reason,
            "sha256": self.sha256,
            "size": self.size,
            "details": copy.deepcopy(self.details),
        }


class SearchResult:
    """The answer for one missing model. ``type`` is the ComfyUI folder the file belongs in."""

    __slots__ = (
        "attempts", "candidates", "details", "evidence", "name", "reason", "sha256", "size", "source", "status",
        "type", "url",
    )  # fmt: skip

    name: str
    type: str | None
    status: Status
    source: str
    evidence: Evidence
    url: str | None
    sha256: str | None
    size: int | None
    reason: str
    candidates: list[Candidate]
    details: dict[str, Any]
    attempts: list[dict[str, str]]

    def __init__(
        self,
        name: str,
        type: str | None,
        status: Status,
        source: str,
        evidence: Evidence = Evidence.NONE,
        url: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        reason: str = "",
        candidates: list[Candidate] | None = None,
        details: dict[str, Any] | None = None,
        attempts: list[dict[str, str]] | None = None,
    ) -> None:
        self.name, self.type, self.status, self.source, self.evidence = name, type, status, source, evidence
        self.url, self.sha256, self.size, self.reason = url, sha256, size, reason
        self.candidates = [] if candidates is None else candidates
        self.details = {} if details is None else details
        self.attempts = [] if attempts is None else attempts

    def to_json(self) -> dict[str, Any]:
        """Return the result as the JSON object the search artifact stores."""
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status.value,
            "source": self.source,
            "evidence": self.evidence.value,
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
            "reason": self.reason,
            "candidates": [c.to_json() for c in self.candidates],
            "details": self.details,
            "attempts": self.attempts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchResult:
        """Return the result stored as ``data`` (the inverse of ``to_json``)."""
        return cls(
            name=data["name"],
            type=data["type"],
            status=Status(data["status"]),
            source=data["source"],
            evidence=Evidence(data["evidence"]),
            url=data.get("url"),
            sha256=data.get("sha256"),
            size=data.get("size"),
            reason=data.get("reason", ""),
            candidates=[Candidate(**{**c, "evidence": Evidence(c["evidence"])}) for c in data.get("candidates", [])],
            details=dict(data.get("details", {})),
            attempts=list(data.get("attempts", [])),
        )


def access_details(page: str | None, token: str, why: str) -> dict[str, Any]:
    """Return ``details["access"]`` of a NEEDS_ACCESS result: the page where access is granted, the name of
    the environment variable that must hold the token of the account that has it, and why."""
    return {"page": page, "token": token, "why": why}


class SearchContext:
    """What a backend gets to work with: the config, secrets, the clock and a shared HTTP client factory."""

    __slots__ = ("config", "http", "now")

    config: Config
    now: datetime
    http: Any  # comfywatchman.search.http.HttpClient once the shared client exists

    def __init__(self, config: Config, now: datetime, http: Any = None) -> None:
        self.config, self.now, self.http = config, now, http

    def secret(self, name: str) -> Secret | None:
        """Return the secret ``name`` (e.g. ``CIVITAI_API_KEY``) if the environment set it."""
        return self.config.secrets.get(name)


class Credential(NamedTuple):
    """A secret a backend sends: the first of ``env`` that is set (``token_file`` too, where one is named)
    goes as a Bearer token to the host of the URL at ``url_key`` in the backend's config section, and nowhere
    else. An empty URL sends it nowhere."""

    env: tuple[str, ...]
    url_key: str
    #: ``"huggingface"``: the token ``hf auth login`` saves is read when no variable is set.
    token_file: str | None = None


class SearchBackend(ABC):
    """One place to look for model files. Subclasses set ``name`` and implement ``lookup``.

    ``config_section`` names the section of the config the backend reads (``self.settings``). A built-in
    backend's section is described in ``schemas/config.schema.json`` with its defaults in
    ``config/default.toml``; a plug-in gives ``config_schema`` instead, a JSON Schema of its section whose
    properties carry their ``default``: the loader takes the defaults from it and validates the user's keys
    against it, so a plug-in's defaults also live in one place.
    """

    name: ClassVar[str]
    #: False for backends that answer from local data only (they still run with --offline).
    needs_network: ClassVar[bool] = True
    #: True for the offline sources (workflow declarations, curated lists) asked for every file before the
    #: backends of ``search.backend_order``; they are not named in that order.
    answers_first: ClassVar[bool] = False
    config_section: ClassVar[str | None] = None
    config_schema: ClassVar[Mapping[str, Any] | None] = None
    credentials: ClassVar[tuple[Credential, ...]] = ()
    #: ``(hosts_key, url_key)``: the public host names listed at ``hosts_key`` of the section are served at
    #: the URL at ``url_key`` (a mirror, a test double), so a declared URL on them is checked there.
    public_hosts: ClassVar[tuple[str, str] | None] = None

    def __init__(self, context: SearchContext) -> None:
        self.context = context

    @property
    def settings(self) -> Mapping[str, Any]:
        """Return this backend's validated config section (read-only; empty when it declares none)."""
        if self.config_section is None:
            return {}
        return self.context.config.section(self.config_section)

    def result(self, query: ModelQuery, status: Status, reason: str, **fields: Any) -> SearchResult:
        """Return a SearchResult from this backend for ``query``."""
        return SearchResult(
            name=query.name, type=query.folder, status=status, source=self.name, reason=reason, **fields
        )

    def nothing_to_say(self, query: ModelQuery) -> bool:
        """Return True when ``search`` would answer NOT_SEARCHED for ``query`` (a valid file name) without
        looking anything up: an offline source that knows at a glance it has nothing about the file says so,
        and the search skips it (thousands of files per cycle). False (the default) when it cannot tell."""
        return False

    def search(self, query: ModelQuery) -> SearchResult:
        """Return what this backend knows about ``query``: INVALID_FILENAME without a lookup for a name that
        is not a file name, ERROR (never an exception) when the lookup fails, else the lookup's answer."""
        bad = invalid_filename_reason(query.name)
        if bad:
            return self.result(query, Status.INVALID_FILENAME, bad)
        try:
            return self.lookup(query)
        except RemoteError as exc:
            if exc.kind == "budget":
                # Not a failure: the cycle's request budget is spent and the file waits for the next cycle
                # (the search stage says so once, not once per file and backend).
                logger.debug("%s not asked about %s: %s", self.name, query.name, exc)
                return self.result(query, Status.ERROR, f"{self.name}: {exc}", details={"error_kind": exc.kind})
            # The words in the template make every failure of one backend "the same warning" for the log's
            # folding under cron (one line with a count), whatever each message says.
            logger.warning("%s lookup failed for %s: %s", self.name, query.name, exc)
            return self.result(query, Status.ERROR, f"{self.name}: {exc}")
        except Exception as exc:  # one failing backend is recorded and the next one goes on
            logger.exception("search backend %s failed on %s", self.name, query.name)
            return self.result(query, Status.ERROR, f"backend crashed: {type(exc).__name__}")

    @abstractmethod
    def lookup(self, query: ModelQuery) -> SearchResult:
        """Return what this backend knows about ``query``; raise RemoteError when a remote call fails."""
