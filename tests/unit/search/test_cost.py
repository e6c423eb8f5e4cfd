"""What a search cycle costs on a realistic mix of missing files, and how a large install converges.

The mix (``mix``) is what installs hold: LoRAs found on Civitai by their exact name, checkpoints Civitai
renamed (candidates only), files repackaged on the Hub by Comfy-Org and city96 (several per repo), and names
found nowhere. Each cycle drives the search stage's own Resolver (offline sources, cache, backends, policy)
with a fresh HttpClient (a fresh request budget) and the cache carried over on disk, as cron would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfywatchman.search.base import ModelQuery, SearchContext, SearchResult, Status
from comfywatchman.search.cache import SearchCache
from comfywatchman.search.http import HttpClient
from comfywatchman.search.registry import backend_class
from comfywatchman.stages import search as search_stage
from comfywatchman.stages.context import StageContext
from tests.fakes.civitai_server import FakeCivitai, make_file, make_model
from tests.fakes.hf_server import FakeHub, Repo, lfs_sha
from tests.helpers.config import config_with
from tests.unit.search.conftest import FAST_SEARCH, NOW

ORDER = ["civitai", "huggingface"]
WORDS = [
    "amber", "azure", "blossom", "cinder", "crystal", "dawn", "dusk", "ember", "fable", "frost",
    "galaxy", "glacier", "harbor", "hazel", "indigo", "ivory", "juniper", "lagoon", "lantern", "lunar",
    "magma", "meadow", "mirage", "neon", "nova", "oasis", "obsidian", "onyx", "opal", "orchid",
]  # fmt: skip
# Hub repos of the repackagers (repo, family prefix of their file names, folder of those files).
HUB = [
    ("Comfy-Org/Wan_2.1_ComfyUI_repackaged", "wan2.1_{w}_14B_fp8_scaled", "diffusion_models"),
    ("Comfy-Org/HunyuanVideo_repackaged", "hunyuan_video_{w}_bf16", "diffusion_models"),
    ("Comfy-Org/Qwen-Image_ComfyUI", "qwen_image_{w}_fp8", "text_encoders"),
    ("city96/Wan2.1-T2V-14B-gguf", "wan2.1-t2v-{w}-Q4_K_M", "diffusion_models"),
]


def mix(size: int) -> tuple[list[ModelQuery], list[dict[str, Any]], list[Repo]]:
    """Return ``size`` missing files (30% Civitai LoRAs, 15% renamed checkpoints, 30% Hub repackaged, 25%
    nowhere), the Civitai catalogue and the Hub repos that hold them. Query ``i`` blocks ``1 + i % 7``
    workflows."""
    queries: list[ModelQuery] = []
    models: list[dict[str, Any]] = []
    hub_files: dict[str, dict[str, tuple[int, str | None]]] = {repo: {} for repo, _p, _f in HUB}
    for i in range(size):
        word = f"{WORDS[i % len(WORDS)]}{i}"
        kind = i % 20
        workflows = tuple(f"w{i}-{k}.json" for k in range(1 + i % 7))
        if kind < 6:
            name = f"{word}_style_v1.safetensors"
            models.append(
                make_model(100000 + i, f"{word} style", "LORA", [(200000 + i, "v1", [make_file(300000 + i, name)])])
            )
            queries.append(ModelQuery(name, "loras", workflows=workflows))
        elif kind < 9:
            civitai_name = f"{word}MixXL_v10.safetensors"
            models.append(
                make_model(
                    100000 + i,
                    f"{word} Mix XL",
                    "Checkpoint",
                    [(200000 + i, "v10", [make_file(300000 + i, civitai_name)])],
                )
            )
            queries.append(ModelQuery(f"{word}_mix_xl_v10.safetensors", "checkpoints", workflows=workflows))
        elif kind < 15:
            repo, pattern, folder = HUB[i % len(HUB)]
            ext = ".gguf" if repo.startswith("city96") else ".safetensors"
            name = pattern.format(w=word) + ext
            hub_files[repo][f"split_files/{folder}/{name}"] = (1_000_000 + i, lfs_sha(name))
            queries.append(ModelQuery(name, folder, workflows=workflows))
        else:
            folder = ("checkpoints", "loras", "diffusion_models", "vae", "upscale_models")[i % 5]
            queries.append(ModelQuery(f"zz_{word}_private_v2.safetensors", folder, workflows=workflows))
    repos = [Repo(repo, files, downloads=1000 - n) for n, (repo, files) in enumerate(hub_files.items())]
    # Other repos of the same authors, as on the real Hub, and of the other repackagers.
    repos += [Repo(f"Comfy-Org/{w}_repackaged", {f"{w}.safetensors": (10, lfs_sha(w))}) for w in WORDS[:12]]
    repos += [Repo(f"Kijai/{w}-comfy", {f"{w}_kj.safetensors": (10, lfs_sha(w + "kj"))}) for w in WORDS[:8]]
    return queries, models, repos


def run_cycle(config: Any, queries: list[ModelQuery], servers: list[Any]) -> tuple[list[SearchResult], int]:
    """Run one search cycle over ``queries``; return the results (in query order) and the requests sent."""
    before = sum(s.count for s in servers)
    http = HttpClient.from_config(config, sleep=lambda s: None)
    context = SearchContext(config=config, now=NOW, http=http)
    cache = SearchCache.from_config(config)
    backends = [backend_class(name)(context) for name in ORDER]
    resolver = search_stage.Resolver(StageContext(config, "cost", clock=lambda: NOW), backends, http, cache)
    results = search_stage.resolve_all(resolver, queries)
    cache.save(NOW)
    return results, sum(s.count for s in servers) - before


def cost_config(home: Path, civitai: FakeCivitai, hub: FakeHub, budget: int) -> Any:
    # The shipped Hub settings (all six repackager authors), pointed at the fakes.
    overrides = {
        "search": {**FAST_SEARCH, "backend_order": ORDER, "max_requests_per_cycle": budget},
        "civitai": {"base_url": civitai.url},
        "huggingface": {"endpoint": hub.url},
    }
    return config_with(home, overrides)


@pytest.fixture
def fakes_for(request):
    started: list[Any] = []

    def start(size: int) -> tuple[list[ModelQuery], FakeCivitai, FakeHub]:
        queries, models, repos = mix(size)
        civitai, hub = FakeCivitai(models).__enter__(), FakeHub(repos).__enter__()
        started.extend([civitai, hub])
        return queries, civitai, hub

    yield start
    for server in started:
        server.__exit__(None, None, None)


def test_cycle_costs_at_most_three_requests_per_missing_model_when_mix_is_realistic(tmp_path, fakes_for):
    queries, civitai, hub = fakes_for(100)
    results, requests = run_cycle(cost_config(tmp_path, civitai, hub, 5000), queries, [civitai, hub])
    by_status: dict[str, int] = {}
    for result in results:
        by_status[result.status.value] = by_status.get(result.status.value, 0) + 1
    per_model = requests / len(queries)
    print(f"\nrequests per missing model: {per_model:.2f} ({requests} for {len(queries)}); {by_status}")
    assert by_status == {"FOUND": 60, "UNCERTAIN": 15, "NOT_FOUND": 25}
    assert per_model <= 3.0


def test_large_install_converges_in_few_cycles_when_budget_is_small(tmp_path, fakes_for, caplog):
    queries, civitai, hub = fakes_for(300)
    config = cost_config(tmp_path, civitai, hub, 100)
    waiting_per_cycle = []
    for cycle in range(12):
        results, requests = run_cycle(config, queries, [civitai, hub])
        assert requests <= 100
        waiting = [r for r in results if r.status is Status.NOT_SEARCHED]
        waiting_per_cycle.append(len(waiting))
        assert all(r.reason == "not searched yet (request budget of this cycle spent); next cycle" for r in waiting)
        assert not [r for r in results if r.status is Status.ERROR]
        if cycle == 0:
            # The budget went to what blocks the most workflows first.
            blocks = {q.name: len(q.workflows) for q in queries}
            searched = [blocks[r.name] for r in results if r.status is not Status.NOT_SEARCHED]
            assert min(searched) >= max(blocks[r.name] for r in waiting)
        if not waiting:
            break
    print(f"\nfiles not searched yet after each cycle: {waiting_per_cycle}")
    # 300 files at about 2.5 requests each need at least 8 cycles of 100 requests.
    assert waiting_per_cycle[-1] == 0 and len(waiting_per_cycle) <= 10
    # Waiting is not failing: no warning per file and backend.
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
