"""Config layering and validation: every error at once, each naming where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

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
