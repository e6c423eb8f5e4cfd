"""A fake HuggingFace Hub (``external-apis.md`` §B) on 127.0.0.1.

Reproduced: ``/api/models`` search (matches repo ids, not files; ``author``; ``limit``; ``Link: rel="next"``
paging), model info, the tree API (recursive, URL-encoded sub-path, ``lfs{oid,size,pointerSize}``, paged with
``Link``), HEAD on resolve URLs (302 to a CDN with ``X-Linked-Etag``/``X-Linked-Size``/``X-Repo-Commit``
for LFS files), and the errors with ``X-Error-Code``: ``RepoNotFound`` (401 without a token, as the real
Hub answers), ``RevisionNotFound``, ``EntryNotFound`` and ``GatedRepo`` (401 without a token, 403 with
an unapproved one).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from tests.fakes import FakeServer, Recorded, Reply


def lfs_sha(label: str) -> str:
    """Return a deterministic lower-case sha256 for a test file called ``label``."""
    return hashlib.sha256(f"hf:{label}".encode()).hexdigest()


@dataclass
class Repo:
    """A repo of the fake Hub: files map path -> (size, sha256 or None for a small non-LFS file)."""

    repo_id: str
    files: dict[str, tuple[int, str | None]]
    gated: bool | str = False
    downloads: int = 0
    sha: str = field(default="")

    def __post_init__(self) -> None:
        self.sha = self.sha or hashlib.sha1(self.repo_id.encode()).hexdigest()


def default_repos() -> list[Repo]:
    """Return the Hub the tests search: repackagers, a gated repo, generic names, a variant."""
    return [
        Repo(
            "Comfy-Org/Wan_2.1_ComfyUI_repackaged",
            {
                "split_files/diffusion_models/wan2.1_t2v_14B_fp8_scaled.safetensors": (
                    14_000_000_000,
                    lfs_sha("wan14"),
                ),
                "split_files/vae/wan_2.1_vae.safetensors": (254_000_000, lfs_sha("wanvae")),
                "README.md": (1200, None),
            },
            downloads=900,
        ),
        Repo(
            "city96/FLUX.1-dev-gguf",
            {
                "flux1-dev-Q4_K_S.gguf": (6_800_000_000, lfs_sha("fluxq4")),
                "flux1-dev-Q8_0.gguf": (12_700_000_000, lfs_sha("fluxq8")),
            },
            downloads=500,
        ),
        Repo(
            "black-forest-labs/FLUX.1-dev",
            {
                "ae.safetensors": (335_000_000, lfs_sha("ae")),
                "flux1-dev.safetensors": (23_800_000_000, lfs_sha("flux1dev")),
                "transformer/diffusion_pytorch_model.safetensors": (9_000_000_000, lfs_sha("transformer")),
            },
            gated="manual",
            downloads=1000,
        ),
        Repo(
            "someone/sdxl-vae",
            {
                "sdxl_vae.safetensors": (334_000_000, lfs_sha("sdxlvae")),
                "diffusion_pytorch_model.safetensors": (334_000_000, lfs_sha("sdxlvae-diffusers")),
            },
            downloads=100,
        ),
    ]


class FakeHub(FakeServer):
    """The fake Hub. ``approved_tokens`` are the tokens granted access to gated repos."""

    def __init__(self, repos: list[Repo] | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.repos = {r.repo_id: r for r in (repos if repos is not None else default_repos())}
        self.approved_tokens: set[str] = set()
        self.tree_page_size = 1000
        # Where resolve redirects LFS files (the real Hub's CDN); tests point it at a ByteServer.
        self.cdn = "https://cdn-lfs.example.invalid"

    def error_reply(self, status: int) -> Reply:
        if status == 503:
            return Reply(503, {"error": "Service Unavailable"}, {"Retry-After": "1"})
        return Reply(status, {"error": f"HTTP {status}"})

    @staticmethod
    def _hub_error(status: int, code: str, message: str) -> Reply:
        return Reply(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _token(self, request: Recorded) -> str | None:
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

    def _repo_or_error(self, request: Recorded, repo_id: str) -> Repo | Reply:
        repo = self.repos.get(repo_id)
        if repo is None:
            # Without a token the real Hub cannot tell "missing" from "private": 401 with RepoNotFound.
            status = 404 if self._token(request) else 401
            return self._hub_error(status, "RepoNotFound", "Repository not found")
        return repo

    def route(self, request: Recorded) -> Reply:
        path, q = request.path, request.query
        if path == "/api/models":
            return self._search(q)
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.+))?", path):
            return self._tree(request, match.group(1), unquote(match.group(2)), unquote(match.group(3) or ""))
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)", path):
            repo = self._repo_or_error(request, match.group(1))
            if isinstance(repo, Reply):
                return repo
            return Reply(
                200,
                {
                    "id": repo.repo_id,
                    "author": repo.repo_id.split("/")[0],
                    "sha": repo.sha,
                    "private": False,
                    "gated": repo.gated,
                    "downloads": repo.downloads,
                    "siblings": [{"rfilename": p} for p in repo.files],
                },
            )
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(request, match.group(1), unquote(match.group(2)), unquote(match.group(3)))
        return Reply(404, {"error": "Not Found"})

    def _search(self, q: dict[str, list[str]]) -> Reply:
        search = q.get("search", [""])[0].casefold()
        author = q.get("author", [""])[0].casefold()
        limit = int(q.get("limit", ["1000"])[0])
        hits = [
            r
            for r in self.repos.values()
            if search in r.repo_id.casefold() and (not author or r.repo_id.split("/")[0].casefold() == author)
        ]
        hits.sort(key=lambda r: -r.downloads)
        start = int(q.get("cursor", ["0"])[0])
        page = hits[start : start + limit]
        headers = {}
        if start + limit < len(hits):
            headers["Link"] = (
                f"<{self.url}/api/models?search={quote(search)}&author={quote(author)}&limit={limit}"
                f'&cursor={start + limit}>; rel="next"'
            )
        body = [
            {
                "id": r.repo_id,
                "author": r.repo_id.split("/")[0],
                "sha": r.sha,
                "private": False,
                "gated": r.gated,
                "downloads": r.downloads,
                "likes": 0,
                "tags": [],
                "lastModified": "2025-01-01",
            }
            for r in page
        ]
        return Reply(200, body, headers)

    def _tree(self, request: Recorded, repo_id: str, revision: str, sub: str) -> Reply:
        repo = self._repo_or_error(request, repo_id)
        if isinstance(repo, Reply):
            return repo
        if revision not in ("main", repo.sha):
            return self._hub_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        recursive = request.query.get("recursive", ["false"])[0] == "true"
        prefix = sub.strip("/") + "/" if sub else ""
        if sub and not any(p.startswith(prefix) for p in repo.files):
            return self._hub_error(404, "EntryNotFound", f"{sub} does not exist on {revision}")
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for file_path, (size, sha) in sorted(repo.files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :]
            if "/" in rest and not recursive:
                dirs.add(prefix + rest.split("/")[0])
                continue
            entry: dict[str, Any] = {
                "type": "file",
                "oid": hashlib.sha1(file_path.encode()).hexdigest(),
                "size": size if sha is None else 134,
                "path": file_path,
            }
            if sha is not None:
                entry["lfs"] = {"oid": sha, "size": size, "pointerSize": 134}
            entries.append(entry)
        entries = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)] + entries
        start = int(request.query.get("cursor", ["0"])[0])
        page = entries[start : start + self.tree_page_size]
        headers = {}
        if start + self.tree_page_size < len(entries):
            cursor = start + self.tree_page_size
            nxt = f"{self.url}{request.path}?recursive={str(recursive).lower()}&cursor={cursor}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return Reply(200, page, headers)

    def _resolve(self, request: Recorded, repo_id: str, revision: str, file_path: str) -> Reply:
        repo = self._repo_or_error(request, repo_id)
        if isinstance(repo, Reply):
            return repo
        if repo.gated:
            token = self._token(request)
            if token is None:
                return self._hub_error(
                    401,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must "
                    "have access to it and be authenticated to access it. Please log in.",
                )
            if token not in self.approved_tokens:
                return self._hub_error(
                    403,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted and you are not in the authorized list.",
                )
        if revision not in ("main", repo.sha):
            return self._hub_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if file_path not in repo.files:
            return self._hub_error(404, "EntryNotFound", f"{file_path} does not exist")
        size, sha = repo.files[file_path]
        headers = {"X-Repo-Commit": repo.sha, "Content-Length": "0"}
        if sha is None:
            return Reply(
                200,
                None,
                {
                    **headers,
                    "ETag": f'"{hashlib.sha1(file_path.encode()).hexdigest()}"',
                    "Content-Length": str(size),
                },
            )
        return Reply(
            302,
            None,
            {
                **headers,
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(size),
                "Location": f"{self.cdn}/{sha}",
            },
        )
