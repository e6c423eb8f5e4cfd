"""A fake ``qwen`` executable (the Qwen Code CLI) for the CLI transport, written into a folder put on PATH.

``install(folder, mode, output)`` writes ``folder/qwen``: a Python script that answers ``qwen PROMPT`` (the
positional prompt of 0.24.x; ``-p PROMPT`` still works there, with a deprecation warning on stderr, as here)
the way the scenario says: ``answer`` prints ``output``; ``hang`` sleeps far past any timeout; ``fail`` exits 3
with an error on stderr; ``env`` prints a JSON answer whose reason lists which secret variables it could see.
Like the real CLI it first starts a worker process of its own (its stdio detached) that keeps running after
the CLI's answer: it writes its pid to ``folder/workers.txt`` and, while ``folder/endpoint.txt`` names a URL,
calls that URL every 0.1 s (the real CLI's workers call the LLM endpoint). Every call's arguments are
appended to ``folder/calls.jsonl``, and what the CLI saw (working folder and its files, HOME) to
``folder/seen.jsonl``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

SCRIPT = """#!{python}
import json, os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
with open(os.path.join(here, "seen.jsonl"), "a") as log:
    seen = {{"cwd": os.getcwd(), "files": sorted(os.listdir(".")), "home": os.environ.get("HOME", "")}}
    log.write(json.dumps(seen) + "\\n")
if sys.argv[1:2] == ["-p"]:
    sys.stderr.write("The --prompt (-p) flag has been deprecated; use a positional prompt.\\n")
WORKER = r'''
import os, sys, time, urllib.request
here = sys.argv[1]
with open(os.path.join(here, "workers.txt"), "a") as log:
    log.write(str(os.getpid()) + "\\n")
while True:
    try:
        with open(os.path.join(here, "endpoint.txt")) as handle:
            urllib.request.urlopen(handle.read().strip(), timeout=1).read()
    except Exception:
        pass
    time.sleep(0.1)
'''
subprocess.Popen([sys.executable, "-c", WORKER, here], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
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


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line] if path.exists() else []


def calls(folder: Path) -> list[list[str]]:
    """Return the argument lists the fake was called with."""
    return [json.loads(line) for line in _lines(folder / "calls.jsonl")]


def seen(folder: Path) -> list[dict[str, object]]:
    """Return what the fake saw on each call: its working folder, the files there, its HOME."""
    return [json.loads(line) for line in _lines(folder / "seen.jsonl")]


def workers(folder: Path) -> list[int]:
    """Return the pids of the worker processes the fake started."""
    return [int(line) for line in _lines(folder / "workers.txt")]


def path_with(folder: Path) -> str:
    """Return a PATH with ``folder`` first."""
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
