"""A fake ``qwen`` executable (the Qwen Code CLI) for the CLI transport, written into a folder put on PATH.

``install(folder, mode, output)`` writes ``folder/qwen``: a Python script that answers ``qwen -p PROMPT`` the
way the scenario says: ``answer`` prints ``output``; ``hang`` sleeps far past any timeout; ``fail`` exits 3
with an error on stderr; ``env`` prints a JSON answer whose reason lists which secret variables it could
see. Every call's arguments are appended to ``folder/calls.jsonl``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

SCRIPT = """#!{python}
import json, os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
mode = {mode!r}
if mode == "hang":
    time.sleep(60)
elif mode == "fail":
    sys.stderr.write("Error: not authenticated\\n")
    sys.exit(3)
elif mode == "env":
    seen = [k for k in ("CIVITAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if k in os.environ]
    print(json.dumps({{"status": "NOT_FOUND", "candidates": [], "reason": "env:" + ",".join(seen)}}))
else:
    with open(os.path.join(here, "answer.txt")) as handle:
        sys.stdout.write(handle.read())
"""


def install(folder: Path, mode: str = "answer", output: str | dict | None = None) -> Path:
    """Write the fake ``qwen`` into ``folder`` and return the folder (to put on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "qwen"
    script.write_text(SCRIPT.format(python=sys.executable, mode=mode), encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    text = output if isinstance(output, str) else json.dumps(output or {})
    (folder / "answer.txt").write_text(text, encoding="utf-8")
    return folder


def calls(folder: Path) -> list[list[str]]:
    """Return the argument lists the fake was called with."""
    log = folder / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


def path_with(folder: Path) -> str:
    """Return a PATH with ``folder`` first."""
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
