"""Resolution from what the workflow itself declares (``properties.models`` / workflow ``models``).

Offline and instant: ``DeclaredBackend`` is the first of the offline sources the search stage asks for
every file. A declaration is proof only when its URL is on a trusted host and the URL's file name
is the file wanted (case-insensitive); anything else is a candidate for a person to check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from comfywatchman.search.base import (
    Candidate,
    Evidence,
    ModelQuery,
    SearchBackend,
    SearchResult,
    Status,
    access_details,
)
from comfywatchman.search.http import HttpClient, RemoteError, host_of
from comfywatchman.search.names import CivitaiRef, parse_air, parse_civitai_url, parse_hf_url

if TYPE_CHECKING:
    from comfywatchman.config import Config

SOURCE = "declared"


def url_filename(url: str) -> str:
    """Return the file name a URL's path ends with (percent-decoded), or ``""``."""
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def host_trusted(url: str, trusted_hosts: Sequence[str]) -> bool:
    """Return whether ``url`` is https (or http) on one of ``trusted_hosts`` or a subdomain of one."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme in ("https", "http") and any(host == h or host.endswith("." + h) for h in trusted_hosts)


def resolve(query: ModelQuery, trusted_hosts: Sequence[str]) -> SearchResult | None:
    """Return FOUND (evidence ``declared``) or UNCERTAIN for ``query`` from its declarations; None if none.

    FOUND needs a declared URL on a trusted host whose file name equals the wanted file name. A declared
    URL elsewhere, or naming another file, is an UNCERTAIN candidate with the reason.
    """
    candidates: list[Candidate] = []
    wanted = query.basename.casefold()
    for decl in query.declarations:
        if not decl.url:
            continue
        filename = url_filename(decl.url)
        trusted = host_trusted(decl.url, trusted_hosts)
        sha = decl.hash.lower() if decl.hash and (decl.hash_type or "sha256").lower() == "sha256" else None
        if trusted and filename.casefold() == wanted:
            return SearchResult(
                name=query.name,
                type=query.folder or decl.directory,
                status=Status.FOUND,
                source=SOURCE,
                evidence=Evidence.DECLARED,
                url=decl.url,
                sha256=sha,
                reason=f"declared by the workflow with a {urlsplit(decl.url).hostname} URL for this exact file name",
            )
        why = []
        if not trusted:
            why.append(f"host {urlsplit(decl.url).hostname!r} is not a trusted host")
        if filename.casefold() != wanted:
            why.append(f"the URL names {filename!r}, not {query.basename!r}")
        candidates.append(
            Candidate(
                SOURCE,
                filename or query.basename,
                decl.url,
                Evidence.SIMILAR_NAME,
                "declared, but " + " and ".join(why),
                sha256=sha,
            )
        )
    if not candidates:
        return None
    return SearchResult(
        name=query.name,
        type=query.folder,
        status=Status.UNCERTAIN,
        source=SOURCE,
        reason="the workflow declares a source that does not check out",
        candidates=candidates,
    )


class DeclaredBackend(SearchBackend):
    """The workflow's own declaration: FOUND with a trusted URL of the exact file name, else UNCERTAIN;
    NOT_SEARCHED ("nothing declared") when the workflow declares no URL for the file."""

    name = SOURCE
    needs_network = False
    answers_first = True

    def nothing_to_say(self, query: ModelQuery) -> bool:
        """Return whether ``query`` declares no URL (``resolve`` then has nothing: "nothing declared")."""
        return not query.declarations or not any(decl.url for decl in query.declarations)

    def lookup(self, query: ModelQuery) -> SearchResult:
        """Return what the declarations of ``query`` prove (see ``resolve``)."""
        found = resolve(query, self.context.config.section("search")["trusted_hosts"])
        return found or self.result(query, Status.NOT_SEARCHED, "nothing declared")


def service_url(url: str, config: Config) -> str:
    """Return ``url`` with a public host of a backend (``public_hosts``: Civitai's, the Hub's) replaced by the
    URL that backend is configured to use, so mirrors (and test doubles) answer the checks the real hosts
    would."""
    from comfywatchman.search.registry import all_backends

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for cls in all_backends().values():
        if cls.public_hosts is None or cls.config_section is None:
            continue
        hosts_key, url_key = cls.public_hosts
        section = config.section(cls.config_section)
        if host in section[hosts_key]:
            target = urlsplit(str(section[url_key]))
            return urlunsplit((target.scheme, target.netloc, target.path.rstrip("/") + parts.path, parts.query, ""))
    return url


def verify(result: SearchResult, http: HttpClient, config: Config | None = None) -> SearchResult:
    """Return ``result`` (a declared FOUND) checked online with a HEAD on its URL.

    The URL must answer (a redirect counts: Civitai and the Hub redirect downloads to a CDN). 401/403 makes it
    NEEDS_ACCESS (a gated repo, an early-access file: the page where access is granted, the token to set).
    ``X-Linked-Etag`` / ``X-Linked-Size`` fill in sha256 and size; a published sha256 that differs from a
    declared one makes the result UNCERTAIN.
    A 404 or 410 makes it UNCERTAIN (the author's link is dead) only when it is evidence: a 410, a 404 the Hub
    explains (``X-Error-Code`` EntryNotFound, RepoNotFound, RevisionNotFound), or a bare 404 from a host that has
    failed no other request this cycle. A bare 404 from a host that is failing (timeouts, resets, 5xx, 429) is
    an outage speaking, and counts as a network failure. A network failure leaves the offline verdict standing,
    saying the URL was not checked (so it is not cached and is checked again next cycle).
    """
    assert result.url is not None
    check_url = service_url(result.url, config) if config is not None else result.url
    try:
        response = http.request("HEAD", check_url, follow_redirects=False)
    except RemoteError as exc:
        result.details["url_check"] = f"not checked: {exc}"
        return result
    status = response.status_code
    result.details["url_check"] = f"HEAD {status}"
    if status == 404 and not _404_is_evidence(response.headers, http, host_of(check_url)):
        failures = http.host_failures(host_of(check_url))
        result.details["url_check"] = (
            f"not checked: HEAD 404 from {host_of(check_url)} while it failed {failures} other requests this cycle"
        )
        return result
    if status in (404, 410):
        return SearchResult(
            name=result.name,
            type=result.type,
            status=Status.UNCERTAIN,
            source=SOURCE,
            reason=f"the declared URL answers HTTP {status}: the author's link is dead",
            candidates=[Candidate(SOURCE, url_filename(result.url), result.url, Evidence.DECLARED, f"HEAD {status}")],
        )
    if status in (401, 403):
        return _locked(result, response.headers, status)
    size, published = _published(response.headers, status)
    if size is not None:
        result.size = size
    if published and result.sha256 and result.sha256 != published:
        return SearchResult(
            name=result.name,
            type=result.type,
            status=Status.UNCERTAIN,
            source=SOURCE,
            reason="the file at the declared URL has another sha256 than the workflow declares (replaced?)",
            candidates=[
                Candidate(
                    SOURCE,
                    url_filename(result.url),
                    result.url,
                    Evidence.DECLARED,
                    "sha256 differs",
                    sha256=published,
                    size=result.size,
                )
            ],
        )
    if published:
        result.sha256 = published
    return result


def _locked(result: SearchResult, headers: Mapping[str, str], status: int) -> SearchResult:
    """Return ``result`` turned NEEDS_ACCESS: the declared URL refuses (a gated Hub repo, an early-access or
    login-only Civitai file), so it is no download source until the user is granted access. ``details.access``
    names the page where access is granted and the token to set."""
    assert result.url is not None
    result.status = Status.NEEDS_ACCESS
    result.details["gated"] = True
    hf_ref = parse_hf_url(result.url)
    civitai_ref = parse_air(result.url) or parse_civitai_url(result.url)
    code = headers.get("X-Error-Code")
    page: str | None
    if hf_ref is not None:
        page, token = f"https://huggingface.co/{hf_ref.repo_id}", "HF_TOKEN"
        why = "gated Hub repo: accept its terms on its page" if code in (None, "GatedRepo") else f"refused ({code})"
    elif civitai_ref is not None:
        page, token = _civitai_page(civitai_ref), "CIVITAI_API_KEY"
        why = "Civitai refuses the download (early access or login required)"
    else:
        page, token = None, "the token of the site"
        why = "the site refuses the download without access"
    result.reason += f"; the declared URL answers HTTP {status}: {why}"
    result.details["access"] = access_details(page, token, why)
    return result


def _civitai_page(ref: CivitaiRef) -> str | None:
    """Return the Civitai page of a referenced model (or of a version, by its id), or None."""
    if ref.model_id is not None:
        return f"https://civitai.com/models/{ref.model_id}" + (
            f"?modelVersionId={ref.version_id}" if ref.version_id else ""
        )
    return f"https://civitai.com/model-versions/{ref.version_id}" if ref.version_id else None


#: The Hub's own word that a file, repo or revision does not exist (``X-Error-Code`` of its 404s).
HUB_MISSING = frozenset({"EntryNotFound", "RepoNotFound", "RevisionNotFound"})


def _404_is_evidence(headers: Mapping[str, str], http: HttpClient, host: str) -> bool:
    """Return whether a 404 proves the file is gone: the Hub says so, or the host is failing nothing else."""
    return headers.get("X-Error-Code", "") in HUB_MISSING or http.host_failures(host) == 0


def _published(headers: Mapping[str, str], status: int) -> tuple[int | None, str | None]:
    """Return ``(size, sha256)`` a HEAD answer publishes (``X-Linked-Size``/``X-Linked-Etag``, the Hub's LFS
    headers; ``Content-Length`` of a 2xx), each None when absent or not well-formed."""
    etag = (headers.get("X-Linked-Etag") or "").strip().strip('"').removeprefix("W/").strip('"').lower()
    published = etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None
    size_text = headers.get("X-Linked-Size") or (headers.get("Content-Length") if status < 300 else None)
    return (int(size_text) if size_text and size_text.isdigit() else None), published
