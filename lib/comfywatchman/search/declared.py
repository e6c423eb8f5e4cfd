"""Resolution from what the workflow itself declares (``properties.models`` / workflow ``models``).

Offline and instant. A declaration is proof only when its URL is on a trusted host and the URL's file name
is the file wanted (case-insensitive); anything else is a candidate for a person to check.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from comfywatchman.search.base import Candidate, Evidence, ModelQuery, SearchResult, Status

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
            Candidate(SOURCE, filename or query.basename, decl.url, Evidence.SIMILAR_NAME, "declared, but " + " and ".join(why), sha256=sha)
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
