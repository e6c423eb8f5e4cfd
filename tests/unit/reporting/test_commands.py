"""The commands the report gives: exact paths, quoted for the shell, tokens named and never shown."""

from __future__ import annotations

import shlex

from comfywatchman.reporting import commands
from comfywatchman.reporting.commands import InstallFacts

ROOT = "/home/me/ComfyUI"
FACTS = InstallFacts(
    root=ROOT,
    python="/home/me/ComfyUI/venv/bin/python",
    disabled={
        "OldPack": {"path": f"{ROOT}/custom_nodes/OldPack.disabled", "disabled_by": "suffix"},
        "comfyui-kjnodes": {
            "path": f"{ROOT}/custom_nodes/.disabled/comfyui-kjnodes@1_0_5",
            "disabled_by": "disabled_folder",
        },
    },
    rerun=("comfywatchman", "--run-cycle", "--home", "/h"),
)


def test_hub_file_at_repo_top_downloads_with_hf_into_the_exact_folder() -> None:
    url = "https://huggingface.co/Comfy-Org/flux1-schnell/resolve/main/flux1-schnell.safetensors"
    ways = commands.download_commands(url, f"{ROOT}/models/unet/Flux/flux1-schnell.safetensors", None, ROOT)
    assert ways[0][0]["argv"] == [
        "hf",
        "download",
        "Comfy-Org/flux1-schnell",
        "flux1-schnell.safetensors",
        "--local-dir",
        f"{ROOT}/models/unet/Flux",
    ]
    assert [way[0]["tool"] for way in ways] == ["hf", "curl", "comfy"]
    assert ways[2][0]["argv"][-4:] == ["--relative-path", "models/unet/Flux", "--filename", "flux1-schnell.safetensors"]


def test_hub_file_in_a_repo_subfolder_uses_curl_to_land_at_the_target() -> None:
    # hf download --local-dir would write DIR/split_files/vae/ae.safetensors: not where ComfyUI looks.
    url = "https://huggingface.co/Comfy-Org/Lumina/resolve/abc123/split_files/vae/ae.safetensors"
    ways = commands.download_commands(url, f"{ROOT}/models/vae/ae.safetensors", None, ROOT)
    assert ways[0][0]["tool"] == "curl"
    assert ways[0][0]["shell"] == f"curl -L --fail --create-dirs -o {ROOT}/models/vae/ae.safetensors {url}"


def test_revision_other_than_main_is_kept() -> None:
    url = "https://huggingface.co/o/r/resolve/0123abc/m.safetensors"
    ways = commands.download_commands(url, f"{ROOT}/models/loras/m.safetensors", None, ROOT)
    assert ways[0][0]["argv"][-2:] == ["--revision", "0123abc"]


def test_paths_with_spaces_and_quotes_are_quoted_for_the_shell() -> None:
    target = "/data/my models/loras/it's here.safetensors"
    url = "https://example.com/f?x=1&y=2"
    ways = commands.download_commands(url, target, None, ROOT)
    assert shlex.split(ways[0][0]["shell"]) == ways[0][0]["argv"]
    assert len(ways) == 1  # outside the ComfyUI root: no comfy --relative-path


def test_civitai_download_names_the_token_variable_never_a_value() -> None:
    url = "https://civitai.com/api/download/models/12345"
    token = commands.token_for(url, gated=False)
    assert token is not None and token["env"] == "CIVITAI_API_KEY" and token["required"] is False
    ways = commands.download_commands(url, f"{ROOT}/models/loras/x.safetensors", token, ROOT)
    shell = ways[0][0]["shell"]
    assert '-H "Authorization: Bearer $CIVITAI_API_KEY"' in shell
    assert shlex.split(shell, posix=True)[-1] == url


def test_gated_hub_file_requires_hf_token() -> None:
    url = "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors"
    assert commands.token_for(url, gated=True) == {
        "env": "HF_TOKEN",
        "required": True,
        "why": "gated repository: accept its terms on the Hub first",
    }
    assert commands.token_for(url, gated=False) is None


def test_pack_with_registry_id_installs_with_comfy_node_install() -> None:
    pack = {"name": "UltimateSDUpscale", "repo": "https://github.com/ssitu/ComfyUI_UltimateSDUpscale"}
    pack_id = commands.registry_id({"cnr_id": "comfyui_ultimatesdupscale"}, pack)
    ways = commands.install_commands(pack, FACTS, pack_id)
    assert ways[0][0]["shell"] == f"comfy --workspace {ROOT} node install comfyui_ultimatesdupscale"
    assert (
        ways[1][0]["shell"] == f"cd {ROOT}/custom_nodes && git clone https://github.com/ssitu/ComfyUI_UltimateSDUpscale"
    )


def test_pack_without_registry_id_is_cloned_with_its_requirements_in_comfyuis_python() -> None:
    pack = {"name": "X", "repo": "https://github.com/a/ComfyUI-X.git"}
    assert commands.registry_id({}, pack) is None
    (way,) = commands.install_commands(pack, FACTS, None)
    assert way[0]["cwd"] == f"{ROOT}/custom_nodes" and way[0]["argv"] == ["git", "clone", pack["repo"]]
    assert way[1]["argv"] == [
        "/home/me/ComfyUI/venv/bin/python",
        "-m",
        "pip",
        "install",
        "-r",
        f"{ROOT}/custom_nodes/ComfyUI-X/requirements.txt",
    ]


def test_single_file_pack_is_fetched_into_custom_nodes() -> None:
    (way,) = commands.install_commands({"name": "g", "repo": "https://gist.example/raw/g.py"}, FACTS, None)
    assert way[0]["shell"] == f"cd {ROOT}/custom_nodes && curl -LO https://gist.example/raw/g.py"


def test_disabled_pack_is_moved_back_where_comfyui_loads_it() -> None:
    suffix = commands.enable_commands("OldPack", FACTS)
    assert suffix[0][0]["argv"] == ["mv", f"{ROOT}/custom_nodes/OldPack.disabled", f"{ROOT}/custom_nodes/OldPack"]
    folder = commands.enable_commands("comfyui-kjnodes", FACTS)
    assert folder[0][0]["argv"][-1] == f"{ROOT}/custom_nodes/comfyui-kjnodes"
    unknown = commands.enable_commands("Elsewhere", FACTS)
    assert [s["shell"] for way in unknown for s in way] == [f"comfy --workspace {ROOT} node enable Elsewhere"]


def test_hf_downloads_into_one_folder_merge_into_one_command() -> None:
    a = ["hf", "download", "o/r", "a.safetensors", "--local-dir", "/m/loras"]
    b = ["hf", "download", "o/r", "b.safetensors", "--local-dir", "/m/loras"]
    other = ["hf", "download", "o/r", "c.safetensors", "--local-dir", "/m/vae"]
    assert commands.hf_batch_key(a) == commands.hf_batch_key(b) != commands.hf_batch_key(other)
    assert commands.hf_batch_key(["curl", "-L", "-o", "x", "u", "v"]) is None
    assert commands.merge_hf([a, b]) == [
        "hf",
        "download",
        "o/r",
        "a.safetensors",
        "b.safetensors",
        "--local-dir",
        "/m/loras",
    ]


def test_search_command_runs_one_cycle_with_the_same_home() -> None:
    (way,) = commands.search_commands(FACTS)
    assert way[0]["shell"] == "comfywatchman --run-cycle --home /h"
