"""``make bench``: the scan at realistic scale, measured against the I/O floor in the same run.

Generates an install (``generate.generate_install``: 2,000 workflows, 20,000 model files) in a temporary
folder, then measures, each in a fresh child process so its peak RSS is its own:

- cold: the cache, intake, scan and verify stages from an empty state folder (verify hashes the files
  whose sha256 a workflow declares);
- warm: the same stages again, nothing changed (every file hashed, nothing hashed again);
- one changed: the same after one workflow file was edited;

and the floor (``floor.measure_floor``: read every workflow once, ``json.loads`` it, walk the model tree),
best of three. Prints a table and the targets with pass/fail; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.floor import measure_floor, workflow_files
from bench.generate import generate_install

REPO = Path(__file__).resolve().parents[1]

STAGES = ("cache", "intake", "scan", "verify")
COLD_OVER_FLOOR = 2.0
WARM_OVER_COLD = 0.2
PEAK_RSS_MB = 300.0
CONFIG = """\
# Written by bench/run.py: the generated install's workflows are JSON and PNG files.
[intake.sources.comfyui]
paths = ["{comfyui_root}/user/*/workflows"]
include = ["*.json", "*.png", "*.webp"]
"""


def run_stages(root: Path, home: Path) -> dict[str, float]:
    """Run the cache, intake, scan and verify stages on ``root`` with state in ``home``; return seconds per stage
    and the total of cache, intake and scan. Raises RuntimeError naming the stage when one fails outright."""
    from comfywatchman import config as config_module
    from comfywatchman.stage_runner import STAGE_RUNNERS
    from comfywatchman.stages.context import StageContext

    config = config_module.load(
        config_file=home / "bench.toml", flags={"comfyui_root": root, "home": home, "offline": True}, env={}
    )
    ctx = StageContext(config, "bench")
    times: dict[str, float] = {}
    start = time.perf_counter()
    for stage in STAGES:
        began = time.perf_counter()
        outcome = STAGE_RUNNERS[stage](ctx)
        times[stage] = time.perf_counter() - began
        if not outcome.ok and stage != "scan":  # unreadable workflows fail the scan outcome, not the bench
            raise RuntimeError(f"stage {stage} failed: {'; '.join(outcome.errors[:3])}")
        times[f"{stage}_detail"] = outcome.detail  # type: ignore[assignment]
    # The targets were set for cache, intake and scan; verify (which hashes files) is shown in its own column.
    times["total"] = time.perf_counter() - start - times["verify"]
    return times


def _child(phase: str, root: Path, home: Path) -> None:
    """Measure one phase in this (child) process and print its figures as one JSON line."""
    if phase == "floor":
        figures: dict[str, object] = {"total": min(measure_floor(root) for _ in range(3))}
    else:
        figures = dict(run_stages(root, home))
    # The scan's worker processes count too: the peak is the larger of this process and its largest child.
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    figures["peak_rss_mb"] = peak / 1024
    print(json.dumps(figures))


def measure(phase: str, root: Path, home: Path) -> dict[str, object]:
    """Run ``phase`` in a child process and return its figures."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--phase", phase, "--root", str(root), "--home", str(home)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{phase} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def touch_one_workflow(root: Path) -> Path:
    """Change one JSON workflow's content (a new node title) and return its path."""
    path = next(p for p in workflow_files(root) if p.suffix == ".json")
    data = json.loads(path.read_bytes())
    data["nodes"][0]["title"] = f"edited {time.time()}"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def report(figures: dict[str, dict[str, object]], counts: dict[str, int]) -> bool:
    """Print the table and the targets; return whether every target is met."""
    floor = float(figures["floor"]["total"])  # type: ignore[arg-type]
    cold = float(figures["cold"]["total"])  # type: ignore[arg-type]
    warm = float(figures["warm"]["total"])  # type: ignore[arg-type]
    changed = float(figures["one_changed"]["total"])  # type: ignore[arg-type]
    rss = max(float(f["peak_rss_mb"]) for name, f in figures.items() if name != "floor")  # type: ignore[arg-type]
    print(
        f"install: {counts['workflows']} workflows ({counts['pngs']} PNG, {counts['subgraph_workflows']} with "
        f"subgraphs, {counts['bytes'] / 1e6:.0f} MB), {counts['model_files']} model files"
    )
    print(f"{'measure':<22}{'seconds':>9}{'cache':>8}{'intake':>8}{'scan':>8}{'verify':>8}{'peak RSS MB':>13}")
    print(f"{'floor (best of 3)':<22}{floor:>9.3f}{'':>32}{float(figures['floor']['peak_rss_mb']):>13.0f}")  # type: ignore[arg-type]
    for label, key in (("cold scan", "cold"), ("warm scan", "warm"), ("one changed workflow", "one_changed")):
        f = figures[key]
        print(
            f"{label:<22}{float(f['total']):>9.3f}{float(f['cache']):>8.3f}{float(f['intake']):>8.3f}"  # type: ignore[arg-type]
            f"{float(f['scan']):>8.3f}{float(f['verify']):>8.3f}{float(f['peak_rss_mb']):>13.0f}"  # type: ignore[arg-type]
        )
    print(f"scan (cold): {figures['cold']['scan_detail']}")
    print(f"verify (cold): {figures['cold']['verify_detail']}")
    print(f"verify (warm): {figures['warm']['verify_detail']}")
    print("seconds: cache + intake + scan (the targets' measure); verify comes on top")
    targets = [
        (f"cold <= {COLD_OVER_FLOOR}x floor", cold / floor, COLD_OVER_FLOOR, f"{cold / floor:.2f}x"),
        (f"warm <= {WARM_OVER_COLD}x cold", warm / cold, WARM_OVER_COLD, f"{warm / cold:.2f}x"),
        (f"peak RSS < {PEAK_RSS_MB:.0f} MB", rss, PEAK_RSS_MB, f"{rss:.0f} MB"),
    ]
    ok = True
    for label, value, limit, shown in targets:
        passed = value <= limit
        ok &= passed
        print(f"  {'PASS' if passed else 'FAIL'}  {label}: {shown}")
    print(f"  (one changed workflow: {changed:.3f}s, {changed / cold:.2f}x cold)")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.run [--workflows N] [--models N] [--seed N] [--keep DIR]``."""
    parser = argparse.ArgumentParser(description="Benchmark the scan on a generated install.")
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--models", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="generate into this (new) folder and keep it")
    parser.add_argument("--phase", choices=("floor", "cold", "warm", "one_changed"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        _child(args.phase, args.root, args.home)
        return 0
    with tempfile.TemporaryDirectory(prefix="comfywatchman-bench-") as tmp:
        base = args.keep or Path(tmp)
        root, home = base / "ComfyUI", base / "home"
        started = time.perf_counter()
        counts = generate_install(root, args.workflows, args.models, args.seed)
        print(f"generated the install in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        home.mkdir(parents=True, exist_ok=True)
        (home / "bench.toml").write_text(CONFIG, encoding="utf-8")
        measure_floor(root)  # warm the page cache once, so floor and scans read from the same cache state
        figures = {"floor": measure("floor", root, home)}
        figures["cold"] = measure("cold", root, home)
        figures["warm"] = measure("warm", root, home)
        touch_one_workflow(root)
        figures["one_changed"] = measure("one_changed", root, home)
        ok = report(figures, counts)
        if args.keep:
            print(f"kept the install in {base}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
