"""HuggingFace Hub: the REST client and the search backend.

Facts it is built on (``external-apis.md`` §B): the model search matches repo names, not file names, so files
are found by walking candidate repos with the tree API (``lfs.oid`` is the file's sha256); sub-paths in the
tree URL are URL-encoded; errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``, ``GatedRepo``); a gated file answers 401 without a token and 403 with an unapproved one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import quote

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

if TYPE_CHECKING:
    import requests  # imported by the HttpClient, and only where a request is made

logger = logging.getLogger(__name__)

GATED_HINT = "gated repo: accept its terms on the Hub and set HF_TOKEN to download"
_LINK_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


PUBLIC_HUB = "https://huggingface.co"  # where a user accepts a gated repo's terms


def repo_page(repo_id: str) -> str:
    """Return the public page of ``repo_id``, where a gated repo's terms are accepted."""
    return f"{PUBLIC_HUB}/{repo_id}"


def hub_client(context: SearchContext) -> HuggingFaceClient:
    """Return a client for the ``[huggingface]`` endpoint (``HF_ENDPOINT`` is a layer of the config) over the
    context's shared HTTP client."""
    http = context.http or HttpClient.from_config(context.config)
    return HuggingFaceClient(http, str(context.config.section("huggingface")["endpoint"]))


class HubError(RemoteError):
    """A Hub answer that says no: ``error_code`` from ``X-Error-Code``; ``gated`` for 401/403 GatedRepo."""

    def __init__(self, message: str, host: str, status: int, error_code: str | None) -> None:
        super().__init__(message, "http", host, status)
        self.error_code = error_code
        self.gated = error_code == "GatedRepo" or (status in (401, 403) and error_code is None)


# NamedTuples, not frozen dataclasses: every cycle's process makes these classes, and a dataclass costs it
# ~0.4 ms to make (Python 3.11), a NamedTuple a tenth of that.
class FileHead(NamedTuple):
    """What a HEAD on a resolve URL says about one file."""

    status: int
    exists: bool
    gated: bool
    sha256: str | None
    size: int | None
    commit: str | None
    error_code: str | None
    message: str


class HubFile(NamedTuple):
    """One file in a repo tree."""

    repo_id: str
    revision: str
    path: str
    size: int | None
    sha256: str | None  # lfs.oid; None for small non-LFS files (their oid is a git sha1)


class HuggingFaceClient:
    """The Hub API calls this project makes, over the shared ``HttpClient``."""

    def __init__(self, http: HttpClient, endpoint: str) -> None:
        self.http = http
        self.endpoint = endpoint.rstrip("/")
        # Answers kept for the client's life (one cycle): many missing files share a repo or an author, and
        # asking the Hub again within minutes would only spend the request budget.
        self._authors: dict[str, list[dict[str, Any]]] = {}
        self._trees: dict[tuple[str, str, str], list[HubFile] | None] = {}

    @property
    def host(self) -> str:
        """Return the ``host:port`` this client talks to."""
        return host_of(self.endpoint)

    def _error(self, response: requests.Response, what: str) -> HubError:
        code = response.headers.get("X-Error-Code")
        message = response.headers.get("X-Error-Message")
        if not message:
            body = self.http.json_of(response, required=False)
            message = body.get("error") if isinstance(body, dict) else None
        text = f"{self.host} answered HTTP {response.status_code} for {what}"
        text += f" ({code})" if code else ""
        text += f": {message}" if message else ""
        return HubError(self.http.scrub(text), self.host, response.status_code, code)

    def search_models(self, search: str, author: str | None = None, limit: int = 5) -> list[dict[str, Any]]:
        """Return up to ``limit`` repos whose id matches ``search`` (``GET /api/models``), by downloads."""
        params: dict[str, Any] = {"search": search, "limit": limit, "sort": "downloads", "direction": -1}
        if author:
            params["author"] = author
        response = self.http.request("GET", f"{self.endpoint}/api/models", params=params)
        if not response.ok:
            raise self._error(response, "model search")
        body = self.http.json_of(response)
        if not isinstance(body, list):
            raise RemoteError(f"{self.host}: model search answered without a list", "bad_json", self.host)
        return [item for item in body if isinstance(item, dict) and isinstance(item.get("id"), str)][:limit]

    def author_repos(self, author: str, max_pages: int = 5) -> list[dict[str, Any]]:
        """Return the repos of ``author``, most downloaded first (``GET /api/models?author=``, 100 a page,
        following ``Link: rel="next"`` up to ``max_pages``), asked once per cycle whatever the file.

        One listing per repackager replaces one search per missing file and repackager: the repos whose name
        holds a file's family word are then picked locally (``repos_matching``).
        """
        if author in self._authors:
            return self._authors[author]
        params: dict[str, Any] | None = {"author": author, "limit": 100, "sort": "downloads", "direction": -1}
        url = f"{self.endpoint}/api/models"
        repos: list[dict[str, Any]] = []
        for _page in range(max_pages):
            response = self.http.request("GET", url, params=params)
            if not response.ok:
                raise self._error(response, f"repo list of {author}")
            body = self.http.json_of(response)
            if not isinstance(body, list):
                raise RemoteError(f"{self.host}: repo list answered without a list", "bad_json", self.host)
            repos += [item for item in body if isinstance(item, dict) and isinstance(item.get("id"), str)]
            match = _LINK_NEXT.search(response.headers.get("Link", ""))
            if not match:
                break
            url, params = match.group(1), None
        self._authors[author] = repos
        return repos

    def repos_matching(self, author: str, word: str, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` repos of ``author`` whose name holds ``word`` (case-insensitive), as a Hub
        search of ``word`` by that author would, from the cycle's one listing of the author's repos."""
        wanted = word.casefold()
        return [r for r in self.author_repos(author) if wanted in r["id"].split("/", 1)[-1].casefold()][:limit]

    def model_info(self, repo_id: str, revision: str | None = None) -> dict[str, Any] | None:
        """Return ``GET /api/models/{repo}[/revision/{rev}]``; None when the repo does not exist.

        Raise HubError for a gated/forbidden answer, RemoteError for any other failure.
        """
        path = f"/api/models/{repo_id}" + (f"/revision/{quote(revision, safe='')}" if revision else "")
        response = self.http.request("GET", f"{self.endpoint}{path}")
        if response.ok:
            return cast("dict[str, Any]", self.http.json_of(response))
        error = self._error(response, f"model info {repo_id}")
        if response.status_code == 404 or error.error_code in ("RepoNotFound", "RevisionNotFound"):
            return None
        raise error

    def list_files(
        self, repo_id: str, revision: str = "main", path: str = "", max_pages: int = 10
    ) -> list[HubFile] | None:
        """Return every file under ``path`` in ``repo_id`` at ``revision`` (tree API, recursive, all pages).

        None when the repo, revision or path does not exist; raise HubError when the tree is refused. A tree
        listed once this cycle is not asked for again (a repackager's repo holds many wanted files).
        """
        key = (repo_id, revision, path)
        if key not in self._trees:
            self._trees[key] = self._list_files(repo_id, revision, path, max_pages)
        return self._trees[key]

    def _list_files(self, repo_id: str, revision: str, path: str, max_pages: int) -> list[HubFile] | None:
        url = f"{self.endpoint}/api/models/{repo_id}/tree/{quote(revision, safe='')}"
        if path:
            url += "/" + quote(path.strip("/"), safe="")  # the Hub expects the sub-path URL-encoded
        files: list[HubFile] = []
        params: dict[str, Any] | None = {"recursive": "true"}
        for _page in range(max_pages):
            response = self.http.request("GET", url, params=params)
            if not response.ok:
                error = self._error(response, f"file list of {repo_id}")
                if response.status_code == 404 or error.error_code in (
                    "RepoNotFound",
                    "RevisionNotFound",
                    "EntryNotFound",
                ):
                    return None
                raise error
            body = self.http.json_of(response)
            if not isinstance(body, list):
                raise RemoteError(f"{self.host}: tree of {repo_id} answered without a list", "bad_json", self.host)
            files += [f for f in (_hub_file(repo_id, revision, entry) for entry in body) if f is not None]
            match = _LINK_NEXT.search(response.headers.get("Link", ""))
            if not match:
                break
            url, params = match.group(1), None
        return files

    def resolve_url(self, repo_id: str, revision: str, path: str) -> str:
        """Return the download URL of ``path`` in ``repo_id`` at ``revision``."""
        return f"{self.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path, safe='/')}"

    def head_file(self, repo_id: str, revision: str, path: str) -> FileHead:
        """Return what a HEAD on the file's resolve URL says: existence, gating, sha256 (X-Linked-Etag), size.

        The redirect to the CDN is not followed: the Hub's own answer carries the headers that matter.
        """
        response = self.http.request("HEAD", self.resolve_url(repo_id, revision, path), follow_redirects=False)
        headers = response.headers
        code = headers.get("X-Error-Code")
        status = response.status_code
        etag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").strip().strip('"').removeprefix("W/")
        etag = etag.strip('"').lower()
        size_text = headers.get("X-Linked-Size") or headers.get("Content-Length")
        exists = status < 400
        gated = code == "GatedRepo" or (status in (401, 403) and code is None)
        message = headers.get("X-Error-Message", "")
        if gated:
            message = message or GATED_HINT
        return FileHead(
            status=status,
            exists=exists,
            gated=gated,
            sha256=etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None,
            size=int(size_text) if size_text and size_text.isdigit() else None,
            commit=headers.get("X-Repo-Commit"),
            error_code=code,
            message=message,
        )


def _hub_file(repo_id: str, revision: str, entry: Any) -> HubFile | None:
    """Return the file a tree entry describes (its ``lfs.oid`` as sha256), or None for folders and junk."""
    if not isinstance(entry, dict) or entry.get("type") != "file" or not entry.get("path"):
        return None
    lfs: dict[str, Any] = entry["lfs"] if isinstance(entry.get("lfs"), dict) else {}
    sha = lfs.get("oid") if isinstance(lfs.get("oid"), str) else None
    size = lfs.get("size", entry.get("size"))
    return HubFile(
        repo_id,
        revision,
        entry["path"],
        size if isinstance(size, int) else None,
        sha.lower() if sha and len(sha) == 64 else None,
    )


def search_terms(name: str) -> tuple[str, str]:
    """Return ``(term, family)`` for a Hub search: the name stripped of variants, and its leading family word.

    Hub search matches repo names; repackagers name repos after the model family (``Wan_2.1_...``,
    ``flux1-dev``), so the family word (the leading letters, e.g. ``wan``) is what finds their repos.
    """
    term = names.query_cascade(name)[-1]
    first = re.split(r"[-_. ]", term, maxsplit=1)[0]
    letters = re.match(r"[A-Za-z]+", first)
    family = letters.group(0) if letters and len(letters.group(0)) >= 3 else first
    return term, family


class HuggingFaceBackend(SearchBackend):
    """Finds a file by exact basename (or sha256) in the trees of candidate Hub repos."""

    name = "huggingface"
    config_section = "huggingface"
    credentials = (Credential(("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), "endpoint", token_file="huggingface"),)
    public_hosts = ("hosts", "endpoint")

    def __init__(self, context: SearchContext, client: HuggingFaceClient | None = None) -> None:
        super().__init__(context)
        self.client = client or hub_client(context)
        self.has_token = bool(context.secret("HF_TOKEN") or context.secret("HUGGING_FACE_HUB_TOKEN"))

    def lookup(self, query: ModelQuery) -> SearchResult:
        """Return FOUND/UNCERTAIN/NOT_FOUND for ``query`` from the trees of candidate repos."""
        return self._search(query)

    def _declared(self, query: ModelQuery) -> list[names.HfRef]:
        hosts = (*tuple(self.settings["hosts"]), self.client.host)
        refs = []
        for decl in query.declarations:
            ref = names.parse_hf_url(decl.url, hosts) if decl.url else None
            if ref is not None:
                refs.append(ref)
        return refs

    def _repo_phases(self, query: ModelQuery, declared: list[names.HfRef]) -> Iterator[dict[str, str]]:
        # Cheapest first: the repos the workflow names; then the repackagers' repos named after the file's
        # family, picked from one listing per author and cycle (after the first file, free); the global
        # search (one request per file) only when those gave no proof.
        term, family = search_terms(query.name)
        limit = int(self.settings["search_limit"])
        yield {ref.repo_id: "declared by the workflow" for ref in declared}
        authors = list(dict.fromkeys([*(r.repo_id.split("/")[0] for r in declared), *self.settings["authors"]]))
        for author in authors:
            yield {
                item["id"]: f"repackager {author} repos named like {family!r}"
                for item in self.client.repos_matching(author, family, limit)
            }
        yield {item["id"]: f"Hub search for {term!r}" for item in self.client.search_models(term, limit=limit)}

    def _search(self, query: ModelQuery) -> SearchResult:
        declared = self._declared(query)
        revision = str(self.settings["revision"])
        max_repos = int(self.settings["max_repos"])
        candidates: list[Candidate] = []
        walked: list[str] = []
        # The phases are lazy: a later phase's searches are only sent while there is room to walk more repos.
        for phase in self._repo_phases(query, declared):
            for repo_id, origin in phase.items():
                if repo_id in walked or len(walked) >= max_repos:
                    continue
                rev = next((r.revision for r in declared if r.repo_id == repo_id and r.revision), revision)
                walked.append(repo_id)
                found = self._walk_repo(query, repo_id, rev, origin, candidates)
                if found is not None:
                    found.details["repos_walked"] = walked
                    return found
            if len(walked) >= max_repos:
                break
        return self._unproven(query, candidates, walked)

    def _walk_repo(
        self, query: ModelQuery, repo_id: str, revision: str, origin: str, candidates: list[Candidate]
    ) -> SearchResult | None:
        """Return the verdict when a file of ``repo_id`` proves ``query``; else add what is close to
        ``candidates`` (other variants of the name, a gated repo's refused list) and return None."""
        try:
            files = self.client.list_files(repo_id, revision)
        except HubError as exc:
            if not exc.gated:
                raise
            candidates.append(self._repo_candidate(repo_id, revision, f"{GATED_HINT} (file list refused)"))
            return None
        key = names.variant_key(query.name)
        for hub_file in files or []:
            found = self._judge(query, hub_file, candidates, origin)
            if found is not None:
                return found
            if (
                names.variant_key(hub_file.path) == key
                and not names.same_basename(hub_file.path, query.name)
                and len(candidates) < 8
            ):
                candidates.append(
                    self._candidate(
                        hub_file, "another variant of the same name (version/precision/quantisation differs)"
                    )
                )
        return None

    def _unproven(self, query: ModelQuery, candidates: list[Candidate], walked: list[str]) -> SearchResult:
        """Return UNCERTAIN with ``candidates`` when there are any, else NOT_FOUND naming how many repos."""
        details = {"repos": walked}
        if candidates:
            return self.result(
                query,
                Status.UNCERTAIN,
                "candidates found on the Hub, none proven",
                evidence=Evidence.SIMILAR_NAME,
                candidates=candidates,
                details=details,
            )
        return self.result(
            query,
            Status.NOT_FOUND,
            f"no file named {query.basename} in {len(walked)} Hub repos",
            details=details,
        )

    def _judge(
        self, query: ModelQuery, hub_file: HubFile, candidates: list[Candidate], origin: str
    ) -> SearchResult | None:
        # The policy for one listed file: a declared sha256 that matches is proof whatever the name; an exact
        # basename is proof unless the hash disagrees or the name is too generic to identify anything.
        known = query.known_sha256
        if known and hub_file.sha256 == known:
            return self._found(
                query,
                hub_file,
                Evidence.HASH,
                "sha256 declared by the workflow matches this file's lfs.oid",
                candidates,
                origin,
            )
        if not names.same_basename(hub_file.path, query.name):
            return None
        if known and hub_file.sha256 and hub_file.sha256 != known:
            candidates.append(
                self._candidate(hub_file, "same name but its sha256 differs from the one the workflow declares")
            )
            return None
        if names.is_generic_basename(query.name):
            candidates.append(self._candidate(hub_file, "same name, but the name is too generic to prove identity"))
            return None
        evidence = Evidence.DECLARED if origin.startswith("declared") else Evidence.EXACT_FILENAME
        return self._found(
            query,
            hub_file,
            evidence,
            "exact file name (case-insensitive) in the repo tree",
            candidates,
            origin,
        )

    def check_file(self, query: ModelQuery, repo_id: str, revision: str, path: str | None) -> SearchResult | None:
        """Return the verdict on one named file (``path`` in ``repo_id``, or any file of the query's name).

        FOUND when the tree proves it; UNCERTAIN with candidates when the file is there but not proven to be
        the one wanted; None when the repo, revision or file does not exist.
        """
        files = self.client.list_files(repo_id, revision)
        if not files:
            return None
        candidates: list[Candidate] = []
        wanted = path.strip("/") if path else None
        for hub_file in files:
            if wanted is not None and hub_file.path != wanted:
                continue
            found = self._judge(query, hub_file, candidates, "named by a suggestion")
            if found is not None:
                return found
            if wanted is not None and not candidates:
                candidates.append(
                    self._candidate(hub_file, "the file exists but its name differs and no hash proves identity")
                )
        if candidates:
            return self.result(
                query,
                Status.UNCERTAIN,
                "the named file is not proven to be the one wanted",
                evidence=Evidence.SIMILAR_NAME,
                candidates=candidates,
            )
        return None

    def _candidate(self, hub_file: HubFile, reason: str) -> Candidate:
        return Candidate(
            source=self.name,
            name=hub_file.path,
            url=self.client.resolve_url(hub_file.repo_id, hub_file.revision, hub_file.path),
            evidence=Evidence.SIMILAR_NAME,
            reason=reason,
            sha256=hub_file.sha256,
            size=hub_file.size,
            details={"repo_id": hub_file.repo_id, "revision": hub_file.revision, "path": hub_file.path},
        )

    def _repo_candidate(self, repo_id: str, revision: str, reason: str) -> Candidate:
        return Candidate(
            source=self.name,
            name=repo_id,
            url=f"{self.client.endpoint}/{repo_id}",
            evidence=Evidence.NONE,
            reason=reason,
            details={"repo_id": repo_id, "revision": revision, "gated": True},
        )

    def _found(
        self,
        query: ModelQuery,
        hub_file: HubFile,
        evidence: Evidence,
        reason: str,
        candidates: list[Candidate],
        origin: str,
    ) -> SearchResult:
        # The tree proves the file exists; the HEAD tells if it can be downloaded (gated) and at which commit.
        head = self.client.head_file(hub_file.repo_id, hub_file.revision, hub_file.path)
        details: dict[str, Any] = {
            "huggingface": {
                "repo_id": hub_file.repo_id,
                "revision": hub_file.revision,
                "path": hub_file.path,
                "commit": head.commit,
                "found_via": origin,
            },
        }
        if head.error_code == "EntryNotFound" or head.status == 404:
            candidates.append(self._candidate(hub_file, "listed in the tree but the file answers 404"))
            return self.result(
                query,
                Status.UNCERTAIN,
                "the listed file could not be confirmed",
                evidence=Evidence.SIMILAR_NAME,
                candidates=candidates,
            )
        if head.sha256 and hub_file.sha256 and head.sha256 != hub_file.sha256:
            candidates.append(self._candidate(hub_file, "tree sha256 and X-Linked-Etag disagree"))
            return self.result(
                query,
                Status.UNCERTAIN,
                "the Hub gives two different hashes for this file",
                evidence=Evidence.SIMILAR_NAME,
                candidates=candidates,
            )
        status = Status.FOUND
        if head.gated:
            # The file exists but only an account that accepted the repo's terms can have it: no download
            # source until the user does (NEEDS_ACCESS, never queued).
            details["huggingface"]["gated"] = True
            hint = GATED_HINT if not self.has_token else "gated repo: HF_TOKEN is set but access is not approved"
            reason = f"{reason}; {hint}"
            status = Status.NEEDS_ACCESS
            details["access"] = access_details(repo_page(hub_file.repo_id), "HF_TOKEN", hint)
        return self.result(
            query,
            status,
            reason,
            evidence=evidence,
            url=self.client.resolve_url(hub_file.repo_id, hub_file.revision, hub_file.path),
            sha256=hub_file.sha256 or head.sha256,
            size=hub_file.size or head.size,
            candidates=candidates,
            details=details,
        )
