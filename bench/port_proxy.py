"""What the web port proxy costs: a request to a machine's port through `/p/...`, and a
100 MiB download through it, against the same request straight to the machine's address.

One labyard instance in a temp data dir (its server in this process, uvicorn on loopback),
one `linux` playground whose machine serves a small file and a big one with Python's
http.server on port 8080. Per round, `--requests` small GETs alternate direct and proxied
(one keep-alive client each, as a browser has), then `--downloads` downloads of the big
file each way. Printed and written as JSON: median and p95 of each, the added latency per
request (proxied minus direct, pair by pair) and the throughput (MiB/s).

`--compare COMMIT` runs this same script (a copy) for COMMIT, checked out in a git worktree,
and for this tree, alternating rounds, and prints both sides and their ratio. The proxy of
COMMIT may have gone to the machine's address; this tree's rides on the machine's SSH
connection (direct-tcpip).

Run as root: `.venv/bin/python bench/port_proxy.py --compare dffe4e1`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PORT = 8080
SERVE = (
    "mkdir -p /srv/www && cd /srv/www && echo small > small && "
    "head -c {size} /dev/urandom > big && "
    f"(nohup python3 -m http.server {PORT} >/dev/null 2>&1 &) && "
    f"for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{PORT}) 2>/dev/null && exit 0; "
    "sleep 0.1; done; exit 1"
)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p95": p95(values), "n": len(values)}


# -- one side: measure in this process ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(app: Any) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def measure(requests: int, downloads: int, size_mib: int) -> dict[str, Any]:
    import httpx

    from labyard.api.app import create_app
    from labyard.manifest import load_manifest
    from labyard.services import Labyard
    from labyard.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-ports-"))
    images = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
    settings = Settings(
        data_dir=data_dir, images_dir=images, database_url=f"sqlite:///{data_dir}/labyard.db"
    )
    labyard = Labyard(settings)
    user = labyard.accounts.create_user("bench@example.org", "a long password")
    token = labyard.accounts.issue(user, "api", "bench")
    loop = asyncio.new_event_loop()
    playground = loop.run_until_complete(
        labyard.playgrounds.start(load_manifest("linux"), owner=user.owner)
    )
    try:
        serve = SERVE.format(size=size_mib * 2**20)
        loop.run_until_complete(_run(labyard, playground.id, serve))
        direct_base = f"http://{playground.machines[0].address}:{PORT}"
        with served(create_app(labyard, reconcile_interval_s=None)) as url:
            proxied_base = f"{url}/p/{playground.id}/linux/{PORT}"
            auth = {"authorization": f"Bearer {token}"}
            with (
                httpx.Client(timeout=60, trust_env=False) as direct,
                httpx.Client(timeout=60, trust_env=False, headers=auth) as proxied,
            ):
                return _timed(direct, direct_base, proxied, proxied_base, requests, downloads)
    finally:
        loop.run_until_complete(labyard.playgrounds.destroy(playground.id))
        subprocess.run(
            ["nft", "delete", "table", "inet", f"labyard_{settings.instance}"],
            capture_output=True,
        )
        labyard.close()
        loop.close()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _run(labyard: Any, playground_id: str, command: str) -> None:
    async with await labyard.playgrounds.connect(playground_id) as connection:
        result = await connection.run(command, timeout=120)
    if result.exit_code != 0:
        raise SystemExit(f"setting the machine up failed: {result.stderr}")


def _get(client: Any, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    response.raise_for_status()
    return time.perf_counter() - started


def _download(client: Any, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    with client.stream("GET", url) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1 << 20):
            size += len(chunk)
    return time.perf_counter() - started, size


def _timed(
    direct: Any, direct_base: str, proxied: Any, proxied_base: str, requests: int, downloads: int
) -> dict[str, Any]:
    for _ in range(5):  # warm-up: connections, the proxy's SSH connection, page cache
        _get(direct, f"{direct_base}/small")
        _get(proxied, f"{proxied_base}/small")
    pairs = [
        (_get(direct, f"{direct_base}/small"), _get(proxied, f"{proxied_base}/small"))
        for _ in range(requests)
    ]
    rates: dict[str, list[float]] = {"direct": [], "proxied": []}
    for _ in range(downloads):
        for side, client, base in (
            ("direct", direct, direct_base),
            ("proxied", proxied, proxied_base),
        ):
            seconds, size = _download(client, f"{base}/big")
            rates[side].append(size / 2**20 / seconds)
    return {
        "direct_s": [d for d, _ in pairs],
        "proxied_s": [p for _, p in pairs],
        "added_s": [p - d for d, p in pairs],
        "direct_mib_s": rates["direct"],
        "proxied_mib_s": rates["proxied"],
    }


# -- two sides: this script for COMMIT and for this tree, alternating -----------------------


@contextmanager
def worktree(commit: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="labyard-before-")) / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), commit],
        check=True,
    )
    (path / "node_modules").symlink_to(REPO / "node_modules")  # the web UI's, not in git
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)])
        shutil.rmtree(path.parent, ignore_errors=True)


def run_side(root: Path, args: argparse.Namespace, script: Path) -> dict[str, Any]:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    command = [
        sys.executable,
        str(script),
        "--requests",
        str(args.requests),
        "--downloads",
        str(args.downloads),
        "--size-mib",
        str(args.size_mib),
        "--raw",
        str(out),
    ]
    subprocess.run(command, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return result


def pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("direct_s", "proxied_s", "added_s", "direct_mib_s", "proxied_mib_s")
    samples = {k: [v for r in rounds for v in r[k]] for k in keys}
    return {**{k: summary(v) for k, v in samples.items()}, "samples": samples}


def compare(args: argparse.Namespace) -> dict[str, Any]:
    snapshot = Path(tempfile.mkdtemp(prefix="labyard-bench-")) / "port_proxy.py"
    shutil.copy(__file__, snapshot)  # both sides run the very same script
    sides: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with worktree(args.compare) as before:
        for _ in range(args.rounds):
            sides["before"].append(run_side(before, args, snapshot))
            sides["after"].append(run_side(REPO, args, snapshot))
    result = {side: pooled(rounds) for side, rounds in sides.items()}
    before_, after_ = result["before"], result["after"]
    result["ratio_after_before"] = {
        "proxied_median": after_["proxied_s"]["median"] / before_["proxied_s"]["median"],
        "proxied_mib_s_median": after_["proxied_mib_s"]["median"]
        / before_["proxied_mib_s"]["median"],
    }
    return result


def report(result: dict[str, Any]) -> None:
    for side in ("before", "after"):
        if side not in result:
            continue
        r = result[side]
        print(
            f"{side:6}  direct {r['direct_s']['median'] * 1000:6.2f} ms (p95 "
            f"{r['direct_s']['p95'] * 1000:6.2f})  proxied {r['proxied_s']['median'] * 1000:6.2f}"
            f" ms (p95 {r['proxied_s']['p95'] * 1000:6.2f})  added "
            f"{r['added_s']['median'] * 1000:6.2f} ms (p95 {r['added_s']['p95'] * 1000:6.2f})"
            f"  100 MiB: direct {r['direct_mib_s']['median']:6.1f} MiB/s, proxied "
            f"{r['proxied_mib_s']['median']:6.1f} MiB/s"
        )
    if "ratio_after_before" in result:
        print("after/before:", json.dumps(result["ratio_after_before"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--downloads", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="per side, with --compare")
    parser.add_argument("--compare", metavar="COMMIT", help="also measure COMMIT (worktree)")
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/port_proxy.json")
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)  # one side's samples
    args = parser.parse_args()
    if args.raw:
        args.raw.write_text(json.dumps(measure(args.requests, args.downloads, args.size_mib)))
        return
    load = os.getloadavg()[0]
    if args.compare:
        result = compare(args)
    else:
        result = {"after": pooled([measure(args.requests, args.downloads, args.size_mib)])}
    result["machine"] = {"host": platform.node(), "cpus": os.cpu_count(), "load_at_start": load}
    report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
