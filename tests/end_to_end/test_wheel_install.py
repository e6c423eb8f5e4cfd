"""A wheel built from the repo, installed in a fresh venv, runs cycles from a folder outside the repo.

Offline-friendly: the wheel is built without build isolation (setuptools from this environment, the test extra
pins one new enough) and installed ``--no-deps --no-index``; a ``.pth`` file lends the fresh venv this
environment's dependencies. ``.pth`` files inside a folder named by a ``.pth`` line are not run, so this
environment's editable install of comfywatchman stays out of sight: the test checks the package is imported
from the fresh venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers.comfy_tree import REPO, ComfyTree, ui_node, ui_workflow

pytestmark = pytest.mark.slow

# What a checkout holds that is no part of the source: environments, build output, what cycles write.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "state", "output",
    "log", ".pending",
)  # fmt: skip


def _run(command: list[str | Path], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMFYUI_", "COMFYWATCHMAN_", "CIVITAI_", "HF_", "PYTHON", "PIP_", "VIRTUAL_ENV"))
    }
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result


def _checked(command: list[str | Path], cwd: Path) -> str:
    result = _run(command, cwd)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the bin folder of a fresh venv holding the wheel built from a copy of this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    dist = work / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _checked([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, source], work)
    (wheel,) = dist.glob("comfywatchman-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "comfywatchman/defaults/default.toml" in names
    assert "comfywatchman/examples/demo-comfyui/extra_model_paths.yaml" in names
    assert not [n for n in names if "__pycache__" in n]

    venv = work / "venv"
    _checked([sys.executable, "-m", "venv", "--without-pip", venv], work)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    site = Path(_checked([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).strip())
    lent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_lent_dependencies.pth").write_text("\n".join(sorted(lent)) + "\n", encoding="utf-8")
    _checked([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], work)
    return bin_dir


def _cycle(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([bin_dir / "comfywatchman", "--run-cycle", "--force", "--offline", "--home", cwd / "home", *args], cwd)


def test_the_package_comes_from_the_fresh_venv(installed: Path, tmp_path: Path) -> None:
    python = installed / ("python.exe" if os.name == "nt" else "python")
    file = _checked([python, "-c", "import comfywatchman; print(comfywatchman.__file__)"], tmp_path).strip()
    assert Path(file).is_relative_to(installed.parent), file
    assert not Path(file).is_relative_to(REPO), file


def test_demo_cycle_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    result = _cycle(installed, tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"using the demo at {installed.parent}" in result.stderr
    # Lines that go to a pipe carry a UTC timestamp first (as in a cron log).
    assert result.stdout.splitlines()[0].endswith(" 6 workflows (demo install): 1 ready, 2 resolvable, 3 needs review")
    assert (tmp_path / "home" / "output" / "reports" / "status" / "master_status.md").is_file()
    models = json.loads((tmp_path / "home" / "state" / "model_cache.json").read_text(encoding="utf-8"))
    # extra_model_paths.yaml's relative base_path reaches the shipped demo-shared-models inside the venv.
    assert "dreamshaper_8.safetensors" in json.dumps(models)


def test_cycle_on_a_given_install_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    tree = ComfyTree(tmp_path / "ComfyUI")
    tree.model("checkpoints", "have.safetensors")
    tree.workflow("one.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["have.safetensors"])]))

    result = _cycle(installed, tmp_path, "--comfyui-root", str(tree.root))

    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "home" / "output" / "reports" / "status" / "master_status.json").read_text())
    assert report["comfyui_root"] == str(tree.root) and report["demo"] is False
    assert report["summary"]["ready"] == 1
