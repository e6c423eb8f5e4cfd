"""The I/O and parsing floor of a scan: the least work any scanner must do on an install.

``measure_floor`` reads every workflow file once, parses the JSON ones with the standard library and lists
every folder of the model tree. A scanner that also finds references, resolves them and writes a report
cannot be faster than this on the same tree and the same (warm or cold) file cache, so the benchmark
reports its own time as a multiple of the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

WORKFLOW_SUFFIXES = (".json", ".png")


def workflow_files(root: Path) -> list[Path]:
    """Returns the workflow files under ``root/user`` (``*.json`` and ``*.png`` inside a ``workflows``
    folder, at any depth), sorted; an empty list when there is no ``user`` folder."""
    user = root / "user"
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(user):
        dirnames.sort()
        if "workflows" not in Path(dirpath).relative_to(user).parts:
            continue
        names = [name for name in sorted(filenames) if name.lower().endswith(WORKFLOW_SUFFIXES)]
        found += [Path(dirpath, name) for name in names]
    return found


def _walk_models(models: Path) -> int:
    """Lists every folder under ``models`` with ``os.scandir`` (following no links); returns the number of
    files seen."""
    count = 0
    stack = [str(models)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        count += 1
        except OSError:
            continue
    return count


def measure_floor(root: Path) -> float:
    """Returns the seconds (``time.perf_counter``) taken to read every workflow file under ``root/user`` once,
    ``json.loads`` each ``.json`` one (PNG files are only read), and list every folder of ``root/models``.

    The list of workflow files is made inside the timed span too, since a scanner has to find them. Files
    that fail to parse are read and counted like the others; the parse error is ignored.
    """
    root = Path(root)
    start = time.perf_counter()
    for path in workflow_files(root):
        data = path.read_bytes()
        if path.suffix.lower() == ".json":
            with contextlib.suppress(ValueError):
                json.loads(data)
    _walk_models(root / "models")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python bench/floor.py ROOT [--repeat N]``; prints the best of N floor times."""
    parser = argparse.ArgumentParser(description="Time the read + parse + walk floor of a ComfyUI install.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    times = [measure_floor(args.root) for _ in range(max(1, args.repeat))]
    files = workflow_files(args.root)
    size = sum(p.stat().st_size for p in files)
    model_files = _walk_models(args.root / "models")
    print(
        f"floor: best {min(times):.3f}s of {len(times)} ({', '.join(f'{t:.3f}' for t in times)}); "
        f"{len(files)} workflow files, {size / 1e6:.1f} MB, {model_files} files under models/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
