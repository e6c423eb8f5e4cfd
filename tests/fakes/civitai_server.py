"""A fake Civitai REST API v1 (``external-apis.md`` §A) on 127.0.0.1.

Reproduced: ``/api/v1/models`` with ``query``/``types``/``limit``/``cursor`` (cursor paging with
``metadata.nextCursor``; ``page`` with ``query`` is the real 400; ``page*limit > 1000`` the real 429), word
matching that drops trailing words when nothing matches (Meilisearch's default), archived models without
files, taken-down models without files or images, ``/api/v1/models/{id}`` and ``/api/v1/model-versions/{id}``
with their 404 JSON bodies, by-hash (any hash kind, case-insensitive) and its bulk POST, ``/api/v1/images``
with the id-mismatch and empty-list defects, and ``/api/download/models/{id}`` redirecting to a signed URL
(403 "Early Access" for a version in early access). Models and versions carry ``availability``; an
early-access version carries ``earlyAccessEndsAt``.
"""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

from tests.fakes import FakeServer, Recorded, Reply, squash


def sha256_of(label: str) -> str:
    """Return a deterministic upper-case sha256 (as Civitai writes it) for a test file ``label``."""
    return hashlib.sha256(label.encode()).hexdigest().upper()


def make_file(
    file_id: int,
    name: str,
    label: str | None = None,
    size_kb: float = 2048.0,
    ftype: str = "Model",
    version_id: int = 0,
) -> dict[str, Any]:
    sha = sha256_of(label or name)
    return {
        "id": file_id,
        "name": name,
        "type": ftype,
        "sizeKB": size_kb,
        "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
        "hashes": {"AutoV2": sha[:10], "SHA256": sha, "CRC32": sha[:8], "BLAKE3": sha[::-1]},
        "downloadUrl": f"https://civitai.com/api/download/models/{version_id}?type=Model&format=SafeTensor",
        "primary": True,
    }


def make_model(
    model_id: int,
    name: str,
    mtype: str,
    versions: list[tuple[int, str, list[dict[str, Any]]]],
    mode: str | None = None,
    nsfw: bool = False,
    early_access: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Return a model as ``/api/v1/models`` gives it. ``early_access`` maps a version id to the end of its
    early access (``availability: EarlyAccess`` and ``earlyAccessEndsAt``, external-apis.md A)."""
    early_access = early_access or {}
    model_versions = []
    for version_id, version_name, files in versions:
        for f in files:
            f["downloadUrl"] = f"https://civitai.com/api/download/models/{version_id}?type=Model&format=SafeTensor"
        model_versions.append(
            {
                "id": version_id,
                "name": version_name,
                "baseModel": "SDXL 1.0",
                "publishedAt": "2025-01-01T00:00:00.000Z",
                "availability": "EarlyAccess" if version_id in early_access else "Public",
                **({"earlyAccessEndsAt": early_access[version_id]} if version_id in early_access else {}),
                "files": files,
                "images": [{"url": "https://image.civitai.com/x.jpeg"}],
                "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
            }
        )
    model = {
        "id": model_id,
        "name": name,
        "type": mtype,
        "nsfw": nsfw,
        "mode": mode,
        "availability": "EarlyAccess" if early_access else "Public",
        "modelVersions": model_versions,
    }
    if mode in ("Archived", "TakenDown"):
        # The real API drops files and download URLs of archived models, and images too when taken down.
        for version in model_versions:
            version["files"] = []
            version.pop("downloadUrl", None)
            if mode == "TakenDown":
                version["images"] = []
    return model


def default_models() -> list[dict[str, Any]]:
    """Return the catalogue the tests search: one model per situation the backend must get right."""
    models = [
        make_model(1001, "Detail Tweaker LoRA", "LORA", [(2001, "v1.0", [make_file(3001, "add_detail.safetensors")])]),
        # Civitai renamed the checkpoint on upload: the workflow's name is not Civitai's.
        make_model(
            1002,
            "Juggernaut XL",
            "Checkpoint",
            [
                (
                    2002,
                    "v9",
                    [make_file(3002, "juggernautXL_v9.safetensors", label="juggernaut-v9", size_kb=6775430.35)],
                )
            ],
        ),
        make_model(
            1003,
            "Old Style LoRA",
            "LORA",
            [(2003, "v1", [make_file(3003, "old_style.safetensors")])],
            mode="Archived",
        ),
        make_model(
            1004,
            "Removed Thing",
            "LORA",
            [(2004, "v1", [make_file(3004, "removed_thing.safetensors")])],
            mode="TakenDown",
        ),
        make_model(
            1005,
            "EasyNegative",
            "TextualInversion",
            [(2005, "v1", [make_file(3005, "easynegative.safetensors", ftype="Negative")])],
        ),
        # Two different files sharing one name: a name alone proves nothing here.
        make_model(1006, "Common Lora A", "LORA", [(2006, "v1", [make_file(3006, "common_name.safetensors", "a")])]),
        make_model(1007, "Common Lora B", "LORA", [(2007, "v1", [make_file(3007, "common_name.safetensors", "b")])]),
        # A variant only: fp8 exists, the workflow wants fp16.
        make_model(
            1008,
            "Variant Model",
            "Checkpoint",
            [(2008, "fp8", [make_file(3008, "variant_model_fp8.safetensors")])],
        ),
    ]
    # A LoRA whose file name a checkpoint loader also uses: found by name, hash or id, it is still a LoRA.
    models.append(make_model(1009, "Crisp Style", "LORA", [(2009, "v1", [make_file(3009, "crisp_style.safetensors")])]))
    # A version in early access (ends after the tests' NOW): the file exists, its download answers 403.
    models.append(
        make_model(
            1010,
            "Fresh Style LoRA",
            "LORA",
            [(2010, "v2", [make_file(3010, "fresh_style.safetensors")])],
            early_access={2010: "2025-11-20T00:00:00.000Z"},
        )
    )
    # 130 models match "flux realism lora", so the one wanted sits on the second page (cursor paging).
    for index in range(130):
        models.append(
            make_model(
                5000 + index,
                f"Flux Realism LoRA Style {index}",
                "LORA",
                [(6000 + index, "v1", [make_file(7000 + index, f"frs_{index}.safetensors")])],
            )
        )
    models.append(
        make_model(5999, "Flux Realism", "LORA", [(6999, "v1", [make_file(7999, "flux_realism_lora.safetensors")])])
    )
    return models


class FakeCivitai(FakeServer):
    """The fake service. ``models`` is its catalogue; ``images`` maps image id -> image; ``image_answers``
    maps a requested image id to the (defective) payload the real API has been seen to return for it."""

    def __init__(self, models: list[dict[str, Any]] | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.models = models if models is not None else default_models()
        self.images: dict[int, dict[str, Any]] = {}
        self.image_answers: dict[int, dict[str, Any]] = {}
        self.download_target = "https://files.example.invalid/signed"

    def error_reply(self, status: int) -> Reply:
        if status == 503:
            return Reply(503, {"error": "Search is overloaded, please try again"}, {"Retry-After": "2"})
        if status == 429:
            return Reply(429, {"error": "Too many requests"})
        # The download endpoint's refusals (external-apis.md A): login, early access, missing, archived.
        if status == 401:
            return Reply(401, {"error": "Unauthorized", "message": "Please log in to download this model"})
        if status == 403:
            return Reply(403, {"error": "Early Access", "deadline": "2026-12-24T00:00:00.000Z"})
        if status == 404:
            return Reply(404, {"error": "File not found"})
        if status == 410:
            return Reply(410, {"error": "Model archived, not available for download"})
        return Reply(status, {"error": f"HTTP {status}"})

    # -- helpers -----------------------------------------------------------------------------------------

    def _versions(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(m, v) for m in self.models for v in m["modelVersions"]]

    def _version_object(self, model: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(version)
        out.update(
            {
                "modelId": model["id"],
                "air": f"urn:air:sdxl:{model['type'].lower()}:civitai:{model['id']}@{version['id']}",
                "status": "Published",
                "trainedWords": [],
                "model": {
                    "name": model["name"],
                    "type": model["type"],
                    "nsfw": model["nsfw"],
                    **({"mode": model["mode"]} if model.get("mode") else {}),
                },
            }
        )
        return out

    def _matches(self, model: dict[str, Any], words: list[str]) -> bool:
        hay = squash(model["name"] + " " + " ".join(f["name"] for v in model["modelVersions"] for f in v["files"]))
        return all(word in hay for word in words)

    # -- routes ------------------------------------------------------------------------------------------

    def route(self, request: Recorded) -> Reply:
        path, q = request.path, request.query
        if request.method == "GET" and path == "/api/v1/models":
            return self._search(q)
        if match := re.fullmatch(r"/api/v1/models/(\d+)", path):
            model = next((m for m in self.models if m["id"] == int(match.group(1))), None)
            return Reply(200, model) if model else Reply(404, {"error": f"No model with id {match.group(1)}"})
        if request.method == "POST" and path == "/api/v1/model-versions/by-hash":
            wanted = {h.upper() for h in request.json()}
            found = [
                self._version_object(m, v)
                for m, v in self._versions()
                if any(str(h).upper() in wanted for f in v["files"] for h in f["hashes"].values())
            ]
            return Reply(200, found)
        if match := re.fullmatch(r"/api/v1/model-versions/by-hash/([0-9A-Za-z]+)", path):
            wanted = match.group(1).upper()
            for model, version in self._versions():
                if any(str(h).upper() == wanted for f in version["files"] for h in f["hashes"].values()):
                    return Reply(200, self._version_object(model, version))
            return Reply(404, {"error": "Model not found"})
        if match := re.fullmatch(r"/api/v1/model-versions/(\d+)", path):
            vid = int(match.group(1))
            for model, version in self._versions():
                if version["id"] == vid:
                    return Reply(200, self._version_object(model, version))
            return Reply(404, {"error": f"No version with id {vid}"})
        if path == "/api/v1/images":
            image_id = int(q.get("imageId", ["0"])[0])
            if image_id in self.image_answers:
                return Reply(200, self.image_answers[image_id])
            image = self.images.get(image_id)
            return Reply(200, {"items": [image] if image else [], "metadata": {}})
        if match := re.fullmatch(r"/api/download/models/(\d+)", path):
            locked = next(
                (v for _m, v in self._versions() if v["id"] == int(match.group(1)) and v["availability"] != "Public"),
                None,
            )
            if locked is not None:
                deadline = locked.get("earlyAccessEndsAt")
                return Reply(403, {"error": "Early Access", "deadline": deadline, "message": "purchase access"})
            return Reply(307, None, {"Location": f"{self.download_target}/{match.group(1)}"})
        return Reply(404, {"error": "Not found"})

    def _search(self, q: dict[str, list[str]]) -> Reply:
        limit = int(q.get("limit", ["100"])[0])
        if "page" in q and "query" in q:
            return Reply(400, {"error": "Cannot use page param with query search. Use cursor-based pagination."})
        if int(q.get("page", ["1"])[0]) * limit > 1000:
            return Reply(429, {"error": "You've requested too many pages, please use cursors instead"})
        types = {t for value in q.get("types", []) for t in value.split(",") if t}
        pool = [m for m in self.models if not types or m["type"] in types]
        if q.get("nsfw", ["false"])[0] != "true":
            pool = [m for m in pool if not m["nsfw"]]
        words = [squash(w) for w in re.split(r"[^0-9A-Za-z]+", q.get("query", [""])[0]) if w]
        hits: list[dict[str, Any]] = []
        # Meilisearch's default strategy: when all words match nothing, drop words from the end.
        while words and not hits:
            hits = [m for m in pool if self._matches(m, words)]
            words = words[:-1]
        start = int(q.get("cursor", ["0"])[0] or 0)
        page = hits[start : start + limit]
        metadata: dict[str, Any] = {}
        if start + limit < len(hits):
            metadata["nextCursor"] = str(start + limit)
            metadata["nextPage"] = f"{self.url}/api/v1/models?cursor={start + limit}"
        return Reply(200, {"items": copy.deepcopy(page), "metadata": metadata})
