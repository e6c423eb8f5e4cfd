"""Download throughput and memory: the project's downloader against a plain ``curl`` of the same file from the
same local server (a ByteServer in its own process, so the client gets a core to itself).

    .venv/bin/python -m bench.download --size-mb 1024 --repeat 2

Prints, per run: seconds, MB/s, CPU seconds (a figure the load of a shared machine moves less), and the
peak RSS of the downloading process (ours: the whole Python process
with the package loaded; curl's for comparison). Ours streams to a part file, hashes SHA256 on the fly,
fsyncs, verifies and renames; ``curl + sha256sum`` is the fair comparison for that work.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = """
import sys, time
from pathlib import Path
from tests.fakes.byte_server import ByteServer
server = ByteServer().start()
server.add("/f", Path(sys.argv[1]))
print(server.url, flush=True)
sys.stdin.read()
"""

CLIENT = """
import resource, sys, time
from pathlib import Path
from comfywatchman.download.fetch import Downloader, Settings
from comfywatchman.download.paths import target_for
from comfywatchman.download.progress import LogProgress
url, folder, digest, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
downloader = Downloader(Settings(min_free_bytes=0), progress=lambda l, t, i: LogProgress(l, t, i))
started = time.monotonic()
got = downloader.fetch(url, target_for([folder], "bench.safetensors.bin"), digest, size)
seconds = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(f"{seconds:.3f} {usage.ru_maxrss} {got.verified} {usage.ru_utime + usage.ru_stime:.2f}")
"""


def _make_file(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    with open(path, "wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 16 * 1024 * 1024))
            hasher.update(block)
            handle.write(block)
            left -= len(block)
    return hasher.hexdigest()


def _timed(command: list[str]) -> tuple[float, float, int]:
    """Run ``command``; return its wall seconds, its CPU seconds (user + system) and the children's peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, cpu, after.ru_maxrss


def main() -> None:
    """Run the comparison and print one line per run."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="cw-dl-bench-") as tmp:
        source = Path(tmp) / "source.bin"
        digest = _make_file(source, size)
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(source)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip() + "/f"
            mb = size / 1e6
            for run in range(args.repeat):
                out = Path(tmp) / "curl.bin"
                seconds, cpu, _ = _timed(["curl", "-s", "-o", str(out), url])
                print(f"run {run}: curl               {seconds:7.2f} s  {mb / seconds:7.1f} MB/s  cpu {cpu:5.2f} s")
                hashed, hash_cpu, _ = _timed(["sha256sum", str(out)])
                total, total_cpu = seconds + hashed, cpu + hash_cpu
                print(f"run {run}: curl + sha256sum    {total:7.2f} s  {mb / total:7.1f} MB/s  cpu {total_cpu:5.2f} s")
                out.unlink()
                folder = Path(tmp) / "models"
                result = subprocess.run([sys.executable, "-c", CLIENT, url, str(folder), digest, str(size)],
                                        check=True, capture_output=True, text=True)  # fmt: skip
                took, rss_kb, verified, cpu_text = result.stdout.split()
                rate, rss = mb / float(took), int(rss_kb) / 1024
                print(f"run {run}: comfywatchman      {float(took):7.2f} s  {rate:7.1f} MB/s  "
                      f"cpu {float(cpu_text):5.2f} s  peak RSS {rss:.0f} MiB  ({verified} verified)")  # fmt: skip
                for path in folder.rglob("*"):
                    if path.is_file():
                        path.unlink()
        finally:
            if server.stdin:
                server.stdin.close()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
