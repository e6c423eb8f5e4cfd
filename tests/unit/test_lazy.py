"""lazy.module: a module's code runs when an attribute of it is first read, and only then."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfywatchman import lazy
from tests.helpers.comfy_tree import REPO


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package ``lazypkg`` on sys.path whose module ``counted`` records each run of its code in runs.txt."""
    folder = tmp_path / "lazypkg"
    folder.mkdir()
    (folder / "__init__.py").write_text("", encoding="utf-8")
    runs = tmp_path / "runs.txt"
    (folder / "counted.py").write_text(
        f"from pathlib import Path\nwith open({str(runs)!r}, 'a') as f:\n    f.write('ran\\n')\nVALUE = 42\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield runs
    for name in ("lazypkg.counted", "lazypkg"):
        sys.modules.pop(name, None)


def test_code_runs_on_first_attribute_read_and_once(package: Path) -> None:
    module = lazy.module("lazypkg.counted")
    assert not package.exists()  # nothing ran yet
    assert sys.modules["lazypkg.counted"] is module
    assert module.VALUE == 42
    assert module.VALUE == 42
    assert package.read_text(encoding="utf-8") == "ran\n"
    import lazypkg.counted  # the import statement finds the same module, and runs nothing again

    assert lazypkg.counted is module
    assert package.read_text(encoding="utf-8") == "ran\n"


def test_a_module_imported_already_is_returned_as_it_is(package: Path) -> None:
    import lazypkg.counted

    assert lazy.module("lazypkg.counted") is lazypkg.counted
    assert package.read_text(encoding="utf-8") == "ran\n"


def test_no_such_module_raises_as_an_import_would(package: Path) -> None:
    with pytest.raises(ModuleNotFoundError, match=r"lazypkg\.absent"):
        lazy.module("lazypkg.absent")
    assert "lazypkg.absent" not in sys.modules


def test_the_scan_stage_imports_no_extractor_until_it_parses() -> None:
    # A cycle where nothing changed returns before parsing: importing the stage must not run the extractor's,
    # the workers' or the indexes' code (a sixth of a warm cycle's imports).
    code = (
        "import sys\nimport comfywatchman.stages.scan as scan\n"
        "heavy = ['comfywatchman.workflow.extract', 'comfywatchman.workflow.parse_worker', "
        "'comfywatchman.comfy.inventory', 'ctypes']\n"
        "print([n for n in heavy if n in sys.modules and not type(sys.modules[n]).__name__ == '_LazyModule'])\n"
        "print(scan.extract.LoaderInput is None, scan.parse_worker.NOT_WORKFLOW is not None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, timeout=60
    )
    assert done.stdout.splitlines() == ["[]", "False True"]
