"""Resolution from what the workflow itself declares (``properties.models`` / workflow ``models``).

Offline and instant. A declaration is proof only when its URL is on a trusted host and the URL's file name
is the file wanted (case-insensitive); anything else is a candidate for a person to check.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from comfywatchman.search.base import Candidate, Evidence, ModelQuery, SearchResult, Status
from comfywatchman.search.http import HttpClient, RemoteError

SOURCE = "declared"


def url_filename(url: str) -> str:
    """Return the file name a URL's path ends with (percent-decoded), or ``""``."""
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def host_trusted(url: str, trusted_hosts: list[str]) -> bool:
    """Return whether ``url`` is https (or http) on one of ``trusted_hosts`` or a subdomain of one."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme in ("https", "http") and any(host == h or host.endswith("." + h) for h in trusted_hosts)


def resolve(query: ModelQuery, trusted_hosts: list[str]) -> SearchResult | None:
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


def service_url(url: str, config: Any) -> str:
    """Return ``url`` with a Civitai or Hub host replaced by the configured ``[civitai] base_url`` or
    ``[huggingface] endpoint``, so mirrors (and test doubles) answer the checks the real hosts would."""
    from comfywatchman.search.civitai import civitai_base_url, civitai_settings
    from comfywatchman.search.huggingface import hf_endpoint, hf_settings

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for hosts, base in (
        (civitai_settings(config)["hosts"], civitai_base_url(config)),
        (hf_settings(config)["hosts"], hf_endpoint(config)),
    ):
        if host in hosts:
            target = urlsplit(base)
            return urlunsplit((target.scheme, target.netloc, target.path.rstrip("/") + parts.path, parts.query, ""))
    return url


def verify(result: SearchResult, http: HttpClient, config: Any = None) -> SearchResult:
    """Return ``result`` (a declared FOUND) checked online with a HEAD on its URL.

    The URL must answer (a redirect counts: Civitai and the Hub redirect downloads to a CDN). 401/403 keeps
    FOUND but marks the file gated (a token or accepting terms is needed). ``X-Linked-Etag`` / ``X-Linked-Size``
    fill in sha256 and size; a published sha256 that differs from a declared one makes the result UNCERTAIN.
    A 404 or 410 makes it UNCERTAIN: the author's link is dead. A network failure leaves the offline verdict
    standing, saying the URL was not checked.
    """
    assert result.url is not None
    check_url = service_url(result.url, config) if config is not None else result.url
    try:
        response = http.request("HEAD", check_url, follow_redirects=False)
    except RemoteError as exc:
        result.details["url_check"] = f"not checked: {exc}"
        return result
    status = response.status_code
    headers = response.headers
    etag = (headers.get("X-Linked-Etag") or "").strip().strip('"').removeprefix("W/").strip('"').lower()
    published = etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None
    size_text = headers.get("X-Linked-Size") or (headers.get("Content-Length") if status < 300 else None)
    result.details["url_check"] = f"HEAD {status}"
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
        result.details["gated"] = True
        result.reason += f"; HTTP {status}: gated, needs a token (HF_TOKEN / CIVITAI_API_KEY) or accepting terms"
        return result
    if size_text and size_text.isdigit():
        result.size = int(size_text)
    if published:
        if result.sha256 and result.sha256 != published:
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
        result.sha256 = published
    return result
