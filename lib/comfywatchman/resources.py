"""Where the project's own files live: schemas, the default config, the demo install, shipped data.

They ship inside the package, found where its import spec says they are: ``comfywatchman.schemas``,
``comfywatchman.defaults`` and ``comfywatchman.examples`` are the repo's top-level ``schemas/``, ``config/`` and
``examples/`` folders, mapped into the package by ``pyproject.toml``. An editable install (``make install``)
reads them in place in the checkout; a wheel (``pip install .``, ``pipx install .``) carries copies under
``site-packages/comfywatchman/``. Either way each name below is a concrete folder or file on disk: the demo's
``extra_model_paths.yaml`` reaches ``demo-shared-models`` by a relative path, and the stages hand these paths
to code that walks real folders.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from comfywatchman.errors import ConfigError


def package_folder(package: str) -> Path:
    """Return the folder on disk that holds the (sub)package ``package``'s files.

    Raises ConfigError when the package is installed somewhere that is not a plain folder (a zip file), since
    the demo install and the schemas must be real files.
    """
    # The package's spec says where its files are without importing it, or importlib.resources (and the zip
    # reader it brings along: milliseconds at every start).
    spec = importlib.util.find_spec(package)
    places = list(spec.submodule_search_locations or []) if spec is not None else []
    folder = Path(places[0]) if len(places) == 1 else None
    if folder is None or not folder.is_dir():
        where = places[0] if len(places) == 1 else (places or None)
        raise ConfigError([f"{package}: installed as {where!r}, not as a folder on disk; reinstall with pip"])
    return folder


PACKAGE_DIR = package_folder("comfywatchman")
SCHEMAS_DIR = package_folder("comfywatchman.schemas")
DEFAULT_CONFIG = package_folder("comfywatchman.defaults") / "default.toml"
EXAMPLES_DIR = package_folder("comfywatchman.examples")
DEMO_COMFYUI_ROOT = EXAMPLES_DIR / "demo-comfyui"
DEMO_SHARED_MODELS = EXAMPLES_DIR / "demo-shared-models"
DATA_DIR = PACKAGE_DIR / "data"


def schema_path(name: str) -> Path:
    """Return the path of the JSON Schema called ``name`` (without ``.schema.json``)."""
    return SCHEMAS_DIR / f"{name}.schema.json"
