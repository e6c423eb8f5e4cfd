"""Where the project's own files live: schemas, the default config, the demo install, shipped data.

The package runs from a checkout (``make install`` makes an editable install), so the top-level ``schemas/``,
``config/`` and ``examples/`` folders sit two levels above this package's folder.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]
SCHEMAS_DIR = REPO_ROOT / "schemas"
DEFAULT_CONFIG = REPO_ROOT / "config" / "default.toml"
DEMO_COMFYUI_ROOT = REPO_ROOT / "examples" / "demo-comfyui"
DATA_DIR = PACKAGE_DIR / "data"


def schema_path(name: str) -> Path:
    """Return the path of the JSON Schema called ``name`` (without ``.schema.json``)."""
    return SCHEMAS_DIR / f"{name}.schema.json"
