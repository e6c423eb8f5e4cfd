"""The config cache: a kept config is the one a load makes, and anything it was made of that changed (the user's
file, a flag, the environment, the installed backends, a torn cache file) means a normal load."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import config, config_cache
from comfywatchman.config import Config, UserDirs
from comfywatchman.errors import ConfigError


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[Path | None]:
    """Count the full loads (``config.check``) this test makes: one entry per call, its config file."""
    made: list[Path | None] = []
    real = config.check

    def counting(config_file: Path | None, *args: Any, **kwargs: Any) -> config.Checked:
        made.append(config_file)
        return real(config_file, *args, **kwargs)

    monkeypatch.setattr(config, "check", counting)
    return made


@pytest.fixture(autouse=True)
def user_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> UserDirs:
    """The user's folders are the test's (the default secrets file is looked for there)."""
    dirs = UserDirs(tmp_path / "user-data", tmp_path / "user-config")
    monkeypatch.setattr(UserDirs, "for_user", classmethod(lambda cls: dirs))
    return dirs


def setup(tmp_path: Path, text: str = "[report]\nrecent_intake = 3\n") -> tuple[Path, Path]:
    """Return a user config file holding ``text`` and a home whose state folder exists."""
    user = tmp_path / "user.toml"
    user.write_text(text)
    home = tmp_path / "home"
    (home / "state").mkdir(parents=True)
    return user, home


def same(a: Config, b: Config) -> None:
    assert (a.data, a.layers, a.comfyui_root, a.using_demo, a.home, a.offline) == (
        b.data,
        b.layers,
        b.comfyui_root,
        b.using_demo,
        b.home,
        b.offline,
    )
    assert list(a.data) == list(b.data)  # the same order of sections, as the TOML files give them
    assert {k: v.reveal() for k, v in a.secrets.items()} == {k: v.reveal() for k, v in b.secrets.items()}
    assert {k: v.reveal() for k, v in a.tokens.items()} == {k: v.reveal() for k, v in b.tokens.items()}


def test_a_kept_config_is_the_one_a_load_makes(tmp_path: Path, checks: list[Path | None]) -> None:
    user, home = setup(tmp_path)
    flags = {"home": home, "comfyui_root": tmp_path / "ComfyUI", "offline": True}
    env = {"CIVITAI_API_KEY": "key-1", "HF_TOKEN": "hf-2"}
    first = config_cache.load(user, flags, env=env, cwd=tmp_path)
    assert (home / "state" / config_cache.FILE_NAME).is_file() and len(checks) == 1
    kept = config_cache.load(user, flags, env=env, cwd=tmp_path)
    assert len(checks) == 1  # from the cache
    fresh = config.load(user, env=env, flags=flags, cwd=tmp_path)
    same(kept, fresh)
    same(first, fresh)
    assert kept.section("report")["recent_intake"] == 3 and kept.tokens  # the Hub's token goes to its host


def test_the_cache_holds_no_secret(tmp_path: Path) -> None:
    user, home = setup(tmp_path)
    secrets = tmp_path / "secrets.env"
    secrets.write_text("CIVITAI_API_KEY=file-secret-123\n")
    secrets.chmod(0o600)
    user.write_text(f'[paths]\nsecrets_file = "{secrets}"\n')
    loaded = config_cache.load(user, {"home": home}, env={"HF_TOKEN": "env-secret-456"}, cwd=tmp_path)
    assert set(loaded.secrets) == {"CIVITAI_API_KEY", "HF_TOKEN"}
    body = (home / "state" / config_cache.FILE_NAME).read_bytes()
    assert b"file-secret-123" not in body and b"env-secret-456" not in body


def test_secrets_are_read_at_every_load(tmp_path: Path, checks: list[Path | None]) -> None:
    user, home = setup(tmp_path)
    config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    kept = config_cache.load(user, {"home": home}, env={"CIVITAI_API_KEY": "new-key"}, cwd=tmp_path)
    assert len(checks) == 1 and kept.secrets["CIVITAI_API_KEY"].reveal() == "new-key"
    assert kept.tokens["civitai.com"].reveal() == "new-key"


def test_a_changed_user_file_is_loaded_again(tmp_path: Path, checks: list[Path | None]) -> None:
    user, home = setup(tmp_path)
    config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    user.write_text("[report]\nrecent_intake = 7\n")
    again = config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    assert len(checks) == 2 and again.section("report")["recent_intake"] == 7
    assert config_cache.load(user, {"home": home}, env={}, cwd=tmp_path).section("report")["recent_intake"] == 7
    assert len(checks) == 2  # kept again


def test_a_file_rewritten_with_the_same_size_and_time_is_still_seen(tmp_path: Path, checks: list[Path | None]) -> None:
    # Replaced by another file (an editor's save-and-rename) with the same size and mtime: another inode.
    user, home = setup(tmp_path)
    config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    stat = user.stat()
    other = tmp_path / "other.toml"
    other.write_text("[report]\nrecent_intake = 5\n")
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(other, user)
    assert config_cache.load(user, {"home": home}, env={}, cwd=tmp_path).section("report")["recent_intake"] == 5


def test_environment_and_flags_still_override(tmp_path: Path, checks: list[Path | None]) -> None:
    user, home = setup(tmp_path, '[comfyui]\nroot = "/from/file"\n')
    flags: dict[str, Any] = {"home": home}
    assert config_cache.load(user, flags, env={}, cwd=tmp_path).comfyui_root == Path("/from/file")
    assert config_cache.load(user, flags, env={"COMFYUI_ROOT": "/from/env"}, cwd=tmp_path).comfyui_root == Path(
        "/from/env"
    )
    flagged = config_cache.load(
        user, {**flags, "comfyui_root": "/from/flag", "offline": True}, env={"COMFYUI_ROOT": "/from/env"}, cwd=tmp_path
    )
    assert flagged.comfyui_root == Path("/from/flag") and flagged.offline
    assert config_cache.load(user, flags, env={}, cwd=tmp_path).comfyui_root == Path("/from/file")
    assert len(checks) == 4  # each a new key; the last one's file was overwritten by the ones between


def test_a_torn_or_foreign_cache_is_a_normal_load(tmp_path: Path, checks: list[Path | None]) -> None:
    user, home = setup(tmp_path)
    path = home / "state" / config_cache.FILE_NAME
    config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # torn
    torn = config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    assert len(checks) == 2 and torn.section("report")["recent_intake"] == 3
    assert path.read_bytes() == whole  # written again, as it was
    path.write_bytes(whole.replace(b"comfywatchman config cache", b"comfywatchman other cache", 1))
    assert config_cache.load(user, {"home": home}, env={}, cwd=tmp_path).section("report")["recent_intake"] == 3
    assert len(checks) == 3


def test_no_cache_without_a_home_named_by_flag_or_environment(tmp_path: Path, checks: list[Path | None]) -> None:
    user, home = setup(tmp_path, f'[paths]\nhome = "{tmp_path / "home"}"\n')
    for _ in range(2):
        assert config_cache.load(user, {}, env={}, cwd=tmp_path).home == home
    assert len(checks) == 2 and not (home / "state" / config_cache.FILE_NAME).exists()
    config_cache.load(user, {}, env={"COMFYWATCHMAN_HOME": str(home)}, cwd=tmp_path)
    assert (home / "state" / config_cache.FILE_NAME).is_file()


def test_a_config_with_an_error_is_never_kept(tmp_path: Path, checks: list[Path | None]) -> None:
    user, home = setup(tmp_path, '[schedule]\nmin_vram_gb = "eight"\n')
    for _ in range(2):
        with pytest.raises(ConfigError, match="is not of type 'number'"):
            config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    assert len(checks) == 2 and not any((home / "state").iterdir())


def test_a_value_json_cannot_give_back_is_not_kept(tmp_path: Path) -> None:
    # A TOML date (a plug-in's section may allow one) would come back as a string: such a config is loaded
    # every time instead.
    import datetime

    path = tmp_path / "state" / config_cache.FILE_NAME
    path.parent.mkdir()
    checked = config.Checked({"report": {"since": datetime.date(1979, 5, 27)}}, ("a.toml",), [])
    config_cache._keep(path, {"k": 1}, {}, checked, None)
    assert not path.exists()
    text = config.Checked({"report": {"since": "1979-05-27"}}, ("a.toml",), [])
    config_cache._keep(path, {"k": 1}, {}, text, None)
    assert config_cache.read(path, {"k": 1}) == (text, None)
    assert config_cache.read(path, {"k": 2}) is None


@pytest.mark.skipif(os.name != "posix", reason="the user's folders are kept on POSIX systems only")
def test_the_user_folders_are_kept_with_what_they_are_found_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checks: list[Path | None]
) -> None:
    found: list[str | None] = []

    def for_user(cls: type[UserDirs]) -> UserDirs:
        found.append(os.environ.get("XDG_CONFIG_HOME"))
        return UserDirs(tmp_path / "data", Path(os.environ.get("XDG_CONFIG_HOME", tmp_path / "cfg")) / "cw")

    monkeypatch.setattr(UserDirs, "for_user", classmethod(for_user))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-1"))
    secrets = tmp_path / "xdg-2" / "cw" / config.SECRETS_FILE_NAME  # the default secrets file of the second
    secrets.parent.mkdir(parents=True)
    secrets.write_text("CIVITAI_API_KEY=from-the-file\n")
    secrets.chmod(0o600)
    user, home = setup(tmp_path)
    first = config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    kept = config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    assert len(found) == 1 and len(checks) == 1 and not kept.secrets and first.home == kept.home == home
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-2"))
    moved = config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    assert len(found) == 2 and moved.secrets["CIVITAI_API_KEY"].reveal() == "from-the-file"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "elsewhere"))  # any XDG variable is part of the key
    config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    assert len(found) == 3


def test_without_a_state_folder_the_cache_waits_for_it(tmp_path: Path, checks: list[Path | None]) -> None:
    user, home = setup(tmp_path)
    (home / "state").rmdir()
    config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    config_cache.save_pending()
    assert not (home / "state").exists()  # a command that makes no state folder gets none from the cache
    (home / "state").mkdir()
    config_cache.save_pending()
    assert (home / "state" / config_cache.FILE_NAME).is_file()
    config_cache.load(user, {"home": home}, env={}, cwd=tmp_path)
    assert len(checks) == 1


PLUGIN = """
from comfywatchman.search.base import SearchBackend, Status


class TinyBackend(SearchBackend):
    name = "tiny"
    config_section = "tiny"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"label": {"type": "string", "default": "tiny"}},
    }

    def lookup(self, query):
        return self.result(query, Status.NOT_FOUND, self.settings["label"])
"""

PROBE = """
import sys
from pathlib import Path
from comfywatchman import config_cache
loaded = config_cache.load(Path(sys.argv[1]), {"home": Path(sys.argv[2])})
print(sorted(loaded.data), loaded.section("search")["backend_order"], "comfywatchman.search.registry" in sys.modules)
"""


def site_env(site: Path) -> dict[str, str]:
    """Return this process's environment with ``site`` first on PYTHONPATH and no home named by it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("COMFYWATCHMAN_HOME", None)
    return env


def register(site: Path, module: str, entry: str) -> Path:
    """Install in ``site`` the distribution of ``module`` (0.1) with the backend entry point ``entry``
    (``name = module:attr``); return its .dist-info folder."""
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[comfywatchman.backends]\n{entry}\n")
    return info


def test_a_plugin_installed_after_a_kept_load_is_found(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()  # on sys.path before the plug-in is there: installing it changes this folder
    user, home = setup(tmp_path, '[search]\nbackend_order = ["civitai"]\n')
    env = site_env(site)

    def probe() -> str:
        args = [sys.executable, "-c", PROBE, str(user), str(home)]
        return subprocess.run(args, env=env, capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()

    first = probe()
    assert first.endswith("['civitai'] True") and "'tiny'" not in first  # loaded: the backends were imported
    assert probe() == first.replace("True", "False")  # kept: no backend imported, not even the registry
    (site / "tiny_backend.py").write_text(textwrap.dedent(PLUGIN))
    register(site, "tiny_backend", "tiny = tiny_backend:TinyBackend")
    found = probe()  # the plug-in's section, with its defaults, is in the config
    assert "'tiny'" in found and found.endswith("True")
    assert probe() == found.replace("True", "False")
    # The plug-in's module changes (its section's schema with it): the kept config is not used.
    (site / "tiny_backend.py").write_text(textwrap.dedent(PLUGIN).replace('"tiny"}', '"tiny!"}'))
    assert probe() == found


def test_a_load_with_a_broken_plugin_is_not_kept_so_its_error_is_logged_every_time(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "broken_backend.py").write_text("raise RuntimeError('this plug-in is broken')\n")
    register(site, "broken_backend", "broken = broken_backend:Broken")
    user, home = setup(tmp_path)
    env = site_env(site)
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(user), str(home)], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert "search backend plug-in broken could not be loaded" in done.stderr
        assert done.stdout.strip().endswith("True")  # loaded, not kept
    assert not (home / "state" / config_cache.FILE_NAME).exists()


def test_a_change_in_a_plugins_helper_module_is_seen(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    plugin = textwrap.dedent(PLUGIN).replace('"default": "tiny"', '"default": LABEL')
    (site / "tiny_backend.py").write_text("from tiny_defaults import LABEL\n" + plugin)
    (site / "tiny_defaults.py").write_text('LABEL = "first"\n')
    register(site, "tiny_backend", "tiny = tiny_backend:TinyBackend")
    user, home = setup(tmp_path)
    env = site_env(site)
    probe = PROBE.replace("print(sorted(loaded.data), ", 'print(loaded.section("tiny")["label"], ')

    def label() -> str:
        args = [sys.executable, "-c", probe, str(user), str(home)]
        return subprocess.run(args, env=env, capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()

    assert label().startswith("first") and label() == "first ['qwen', 'civitai'] False"
    (site / "tiny_defaults.py").write_text('LABEL = "second!"\n')
    assert label() == "second! ['qwen', 'civitai'] True"


REGISTRY_PROBE = """
import sys
from pathlib import Path
from comfywatchman import config_cache
config_cache.load(Path(sys.argv[1]), {"home": Path(sys.argv[2])})
from comfywatchman.search import registry
backends = registry.all_backends()
print(sorted(backends), [cls.__module__ for cls in registry.first_sources()], "importlib.metadata" in sys.modules)
"""


def test_a_kept_config_gives_the_registry_its_entry_points_and_a_new_plugin_is_still_found(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    user, home = setup(tmp_path)
    env = site_env(site)

    def probe() -> str:
        args = [sys.executable, "-c", REGISTRY_PROBE, str(user), str(home)]
        return subprocess.run(args, env=env, capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()

    first = probe()
    builtins = "['civitai', 'declared', 'huggingface', 'manager_model_list', 'qwen']"
    assert first.startswith(builtins) and first.endswith("True")  # loaded: importlib.metadata found them
    assert probe() == first.replace("True", "False")  # kept: the same backends, importlib.metadata not imported
    (site / "tiny_backend.py").write_text(textwrap.dedent(PLUGIN) + "\n\nclass Holder:\n    Tiny = TinyBackend\n")
    # The value names an attribute path, as an entry point may (module:attr.attr, read as importlib reads it).
    info = register(site, "tiny_backend", "tiny = tiny_backend:Holder.Tiny")
    found = probe()
    assert found.startswith(builtins.replace("'qwen'", "'qwen', 'tiny'")) and found.endswith("True")
    assert probe() == found.replace("True", "False")
    # Its entry point now names what is not there: the file changed, so the kept entry points are not used.
    (info / "entry_points.txt").write_text("[comfywatchman.backends]\ntiny = tiny_backend:Holder.Missing\n")
    broken = subprocess.run(
        [sys.executable, "-c", REGISTRY_PROBE, str(user), str(home)], env=env, capture_output=True, text=True
    )
    assert "search backend plug-in tiny could not be loaded" in broken.stderr
