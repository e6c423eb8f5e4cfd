"""Config layering and validation: every error at once, each naming where it came from."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import config
from comfywatchman.config import Secret, UserDirs, deep_merge, expand_path, load
from comfywatchman.errors import ConfigError


def test_load_uses_demo_and_user_data_folder_when_nothing_is_configured(tmp_path: Path) -> None:
    # An installed tool keeps its files in the user's data folder, not wherever it was started (issue 10).
    dirs = UserDirs(tmp_path / "data", tmp_path / "config")
    config = load(env={}, cwd=tmp_path / "elsewhere", dirs=dirs)
    assert config.using_demo and config.comfyui_root.name == "demo-comfyui"
    assert config.home == dirs.data
    assert config.section("search")["backend_order"] == ["qwen", "civitai"]
    assert config.state_dir == dirs.data / "state"


def test_user_dirs_default_to_platform_data_and_config_folders() -> None:
    import platformdirs

    dirs = UserDirs.for_user()
    assert dirs.data == platformdirs.user_data_path("comfywatchman", appauthor=False)
    assert dirs.config == platformdirs.user_config_path("comfywatchman", appauthor=False)


def test_load_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    user = tmp_path / "user.toml"
    user.write_text('[comfyui]\nroot = "/from/file"\n[schedule]\nmin_vram_gb = 6\n[paths]\nhome = "from-file"\n')
    env = {"COMFYUI_ROOT": "/from/env"}
    assert load(user, env={}, cwd=tmp_path).comfyui_root == Path("/from/file")
    assert load(user, env=env, cwd=tmp_path).comfyui_root == Path("/from/env")
    flagged = load(user, env=env, flags={"comfyui_root": "/from/flag", "offline": True}, cwd=tmp_path)
    assert flagged.comfyui_root == Path("/from/flag")
    assert flagged.offline is True
    assert flagged.section("schedule")["min_vram_gb"] == 6
    assert flagged.section("schedule")["interval_minutes"] == 120  # untouched defaults stay
    assert flagged.home == tmp_path / "from-file"


def test_load_reads_user_file_from_environment_variable(tmp_path: Path) -> None:
    user = tmp_path / "env.toml"
    user.write_text("[report]\nrecent_intake = 3\n")
    config = load(env={"COMFYWATCHMAN_CONFIG": str(user)}, cwd=tmp_path)
    assert config.section("report")["recent_intake"] == 3


def test_load_reports_every_error_naming_file_and_key(tmp_path: Path) -> None:
    user = tmp_path / "my.toml"
    user.write_text('[schedule]\nmin_vram_gb = "eight"\nintervall = 5\n[nonsense]\nx = 1\n')
    with pytest.raises(ConfigError) as caught:
        load(user, env={}, cwd=tmp_path)
    messages = caught.value.messages
    assert f"{user}: at 'schedule.min_vram_gb': 'eight' is not of type 'number'" in messages
    assert any("'intervall' was unexpected" in m and m.startswith(f"{user}: at 'schedule'") for m in messages)
    assert any("'nonsense' was unexpected" in m for m in messages)
    assert caught.value.exit_code == 2


def test_load_refuses_invalid_toml_naming_the_file(tmp_path: Path) -> None:
    user = tmp_path / "broken.toml"
    user.write_text("[schedule\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load(user, env={}, cwd=tmp_path)
    user.write_bytes(b"[schedule]\nmin_vram_gb = 8 # \xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML: not UTF-8 text \(byte 29\)"):
        load(user, env={}, cwd=tmp_path)


def test_load_refuses_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "nope.toml", env={}, cwd=tmp_path)


def test_load_accepts_user_loader_entries_with_index(tmp_path: Path) -> None:
    user = tmp_path / "loaders.toml"
    user.write_text('[scan.loaders]\nMyLoader = { model = { folder = "checkpoints", index = 2 } }\n')
    config = load(user, env={}, cwd=tmp_path)
    assert config.section("scan")["loaders"]["MyLoader"] == {"model": {"folder": "checkpoints", "index": 2}}
    assert "CheckpointLoaderSimple" in config.section("scan")["loaders"]  # defaults kept alongside


def test_load_refuses_loader_entry_of_wrong_shape(tmp_path: Path) -> None:
    user = tmp_path / "loaders.toml"
    user.write_text("[scan.loaders]\nMyLoader = { model = 3 }\n")
    with pytest.raises(ConfigError, match=r"at 'scan.loaders.MyLoader.model': 3 is neither a folder name"):
        load(user, env={}, cwd=tmp_path)


def test_secrets_come_from_environment_and_never_show(tmp_path: Path) -> None:
    config = load(env={"CIVITAI_API_KEY": "abc123secret", "HF_TOKEN": "hf_zzz"}, cwd=tmp_path)
    key = config.secrets["CIVITAI_API_KEY"]
    assert key.reveal() == "abc123secret"
    assert "abc123secret" not in repr(config) and "abc123secret" not in str(key) and "hf_zzz" not in repr(config)
    assert not Secret("")


def test_deep_merge_merges_tables_and_replaces_lists() -> None:
    merged = deep_merge({"a": {"x": 1, "y": [1, 2]}, "b": 1}, {"a": {"y": [3]}, "c": 2})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}


def test_expand_path_expands_root_home_and_variables(tmp_path: Path) -> None:
    env = {"DATA": "/data"}
    assert expand_path("{comfyui_root}/user", env, tmp_path, Path("/opt/ComfyUI")) == Path("/opt/ComfyUI/user")
    assert expand_path("$DATA/wf", env, tmp_path) == Path("/data/wf")
    assert expand_path("${DATA}/wf", env, tmp_path) == Path("/data/wf")
    assert expand_path("rel", env, tmp_path) == tmp_path / "rel"
    assert expand_path("~/x", env, tmp_path) == Path.home() / "x"


def test_load_takes_hf_endpoint_from_environment(tmp_path: Path) -> None:
    config = load(env={"HF_ENDPOINT": "http://127.0.0.1:9999"}, cwd=tmp_path)
    assert config.section("huggingface")["endpoint"] == "http://127.0.0.1:9999"


# -- every error at once, with "did you mean" (issue 10) -------------------------------------------------------


def test_load_lists_unknown_backend_together_with_other_errors(tmp_path: Path) -> None:
    user = tmp_path / "my.toml"
    user.write_text('[schedule]\nmin_vram_gb = "eight"\n[search]\nbackend_order = ["qwen", "civitia"]\n')
    with pytest.raises(ConfigError) as caught:
        load(user, env={}, cwd=tmp_path, dirs=UserDirs(tmp_path, tmp_path))
    messages = caught.value.messages
    assert f"{user}: at 'schedule.min_vram_gb': 'eight' is not of type 'number'" in messages
    assert any(
        m.startswith(f"{user}: at 'search.backend_order[1]': unknown backend 'civitia' (did you mean 'civitai'?)")
        for m in messages
    ), messages


def test_load_suggests_the_closest_key_when_a_key_is_unknown(tmp_path: Path) -> None:
    user = tmp_path / "typo.toml"
    user.write_text("[schedule]\nintervall_minutes = 5\n[civitai]\nbase_ulr = 'https://x'\n")
    with pytest.raises(ConfigError) as caught:
        load(user, env={}, cwd=tmp_path, dirs=UserDirs(tmp_path, tmp_path))
    text = "\n".join(caught.value.messages)
    assert "'intervall_minutes' was unexpected" in text and "did you mean 'interval_minutes'?" in text
    assert "did you mean 'base_url'?" in text


# -- secrets for unattended runs (issue 10) ---------------------------------------------------------------------


def _secrets_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_secrets_file_named_in_config_gives_each_secret_to_its_host(tmp_path: Path) -> None:
    secrets = _secrets_file(
        tmp_path / "s.env", '# for cron\nCIVITAI_API_KEY=civ-from-file\nexport HF_TOKEN="hf_file"\n'
    )
    user = tmp_path / "u.toml"
    user.write_text(f'[paths]\nsecrets_file = "{secrets}"\n[civitai]\nbase_url = "http://127.0.0.1:8001"\n')
    config = load(user, env={}, cwd=tmp_path, dirs=UserDirs(tmp_path, tmp_path))
    assert config.secrets["CIVITAI_API_KEY"].reveal() == "civ-from-file"
    assert {host: s.reveal() for host, s in config.tokens.items()} == {
        "127.0.0.1:8001": "civ-from-file",
        "huggingface.co": "hf_file",
    }
    assert "civ-from-file" not in repr(config) and "hf_file" not in repr(config)


def test_secrets_file_in_user_config_folder_is_read_and_environment_wins(tmp_path: Path) -> None:
    dirs = UserDirs(tmp_path / "data", tmp_path / "config")
    dirs.config.mkdir()
    _secrets_file(dirs.config / "secrets.env", "CIVITAI_API_KEY=civ-file\nHF_TOKEN=hf_file\n")
    config = load(env={"HF_TOKEN": "hf_env"}, cwd=tmp_path, dirs=dirs)
    assert config.secrets["CIVITAI_API_KEY"].reveal() == "civ-file"
    assert config.secrets["HF_TOKEN"].reveal() == "hf_env"


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
def test_secrets_file_readable_by_others_is_refused_without_showing_values(tmp_path: Path) -> None:
    secrets = _secrets_file(tmp_path / "s.env", "CIVITAI_API_KEY=civ-LEAK\nCIVITAI_KEY=other-LEAK\n", mode=0o644)
    user = tmp_path / "u.toml"
    user.write_text(f'[paths]\nsecrets_file = "{secrets}"\n')
    with pytest.raises(ConfigError) as caught:
        load(user, env={}, cwd=tmp_path, dirs=UserDirs(tmp_path, tmp_path))
    text = "\n".join(caught.value.messages)
    assert f"{secrets}: secrets file is readable by others (mode 644); chmod 600 it" in text
    assert "line 2: unknown secret 'CIVITAI_KEY' (did you mean 'CIVITAI_API_KEY'?)" in text
    assert "LEAK" not in text


def test_secrets_file_named_but_missing_is_an_error(tmp_path: Path) -> None:
    user = tmp_path / "u.toml"
    user.write_text(f'[paths]\nsecrets_file = "{tmp_path / "gone.env"}"\n')
    with pytest.raises(ConfigError, match=r"gone\.env: secrets file not found"):
        load(user, env={}, cwd=tmp_path, dirs=UserDirs(tmp_path, tmp_path))


@pytest.mark.parametrize("where", ["HF_TOKEN_PATH", "HF_HOME", "HOME"])
def test_hub_token_saved_by_hf_auth_login_is_read_when_no_variable_is_set(tmp_path: Path, where: str) -> None:
    paths = {
        "HF_TOKEN_PATH": tmp_path / "elsewhere" / "my-token",
        "HF_HOME": tmp_path / "hf" / "token",
        "HOME": tmp_path / ".cache" / "huggingface" / "token",
    }
    paths[where].parent.mkdir(parents=True)
    paths[where].write_text("hf_saved_by_login\n")
    env = {"HF_TOKEN_PATH": str(paths["HF_TOKEN_PATH"])} if where == "HF_TOKEN_PATH" else {}
    env |= {"HF_HOME": str(tmp_path / "hf")} if where == "HF_HOME" else {}
    env |= {"HOME": str(tmp_path)}
    config = load(env=env, cwd=tmp_path, dirs=UserDirs(tmp_path, tmp_path))
    assert config.secrets["HF_TOKEN"].reveal() == "hf_saved_by_login"
    assert {h: s.reveal() for h, s in config.tokens.items()} == {"huggingface.co": "hf_saved_by_login"}
    # The variable wins over the saved login.
    assert (
        load(env={**env, "HF_TOKEN": "hf_var"}, cwd=tmp_path, dirs=UserDirs(tmp_path, tmp_path))
        .tokens["huggingface.co"]
        .reveal()
        == "hf_var"
    )


def test_qwen_key_goes_to_the_chat_endpoint_host_only_when_one_is_set(tmp_path: Path) -> None:
    dirs = UserDirs(tmp_path, tmp_path)
    assert load(env={"QWEN_API_KEY": "sk-q"}, cwd=tmp_path, dirs=dirs).tokens == {}
    user = tmp_path / "u.toml"
    user.write_text('[qwen]\nbase_url = "http://127.0.0.1:8003/v1"\n')
    tokens = load(user, env={"DASHSCOPE_API_KEY": "sk-d"}, cwd=tmp_path, dirs=dirs).tokens
    assert {h: s.reveal() for h, s in tokens.items()} == {"127.0.0.1:8003": "sk-d"}


def test_sections_are_read_only(tmp_path: Path) -> None:
    config = load(env={}, cwd=tmp_path, dirs=UserDirs(tmp_path, tmp_path))
    with pytest.raises(TypeError, match="read-only"):
        config.section("search")["offline"] = True  # type: ignore[index]
    with pytest.raises(TypeError, match="read-only"):
        config.section("search")["backend_order"].append("bing")
    with pytest.raises(TypeError, match="read-only"):
        config.section("scan")["loaders"]["LoraLoader"]["lora_name"] = "x"
    assert config.section("search")["offline"] is False and config.section("search")["backend_order"] == [
        "qwen",
        "civitai",
    ]


def test_plugin_section_schema_adds_defaults_and_may_not_take_a_builtin_section() -> None:
    from typing import ClassVar

    from comfywatchman.config import config_schema, plugin_default_layers
    from comfywatchman.search.base import SearchBackend

    class Mine(SearchBackend):
        name = "mine"
        config_section = "mine"
        config_schema: ClassVar[dict[str, Any]] = {
            "type": "object",
            "properties": {"limit": {"type": "integer", "default": 3}},
        }

    class Thief(Mine):
        name = "thief"
        config_section = "civitai"

    schema, errors = config_schema({"mine": Mine, "thief": Thief})
    assert schema["properties"]["mine"] == dict(Mine.config_schema) and "mine" in schema["required"]
    assert errors == ["backend 'thief': config section [civitai] is already taken"]
    assert [(layer.source, layer.data) for layer in plugin_default_layers({"mine": Mine, "thief": Thief}, schema)] == [
        ("defaults of backend 'mine'", {"mine": {"limit": 3}})
    ]


def test_layers_merged_in_place_as_deep_merge_merges_them() -> None:
    """load merges its layers into one dict of copies (``_merge_into``); the result is deep_merge's, and no
    layer's data is shared with it or changed by it."""
    layers = [
        {"a": {"b": 1, "c": [1, 2], "d": {"e": "x"}}, "f": 1},
        {"a": {"c": [3], "d": {"g": 2}}, "h": {"i": None}},
        {"a": 5, "h": {"i": {"j": [{"k": 1}]}}},
        {"a": {"new": True}},
    ]
    before = copy.deepcopy(layers)
    expected: dict[str, Any] = {}
    merged: dict[str, Any] = {}
    for data in layers:
        expected = config.deep_merge(expected, data)
        config._merge_into(merged, data)
        assert merged == expected
    assert layers == before
    merged["h"]["i"]["j"][0]["k"] = 2  # a copy: the layer keeps its value
    assert layers[2]["h"]["i"]["j"][0]["k"] == 1
