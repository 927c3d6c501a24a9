"""Click Start -> first shell prompt visible in the browser, on a private labyard server.

What a learner waits for: from clicking Start on the catalog page to the shell prompt being
painted in the playground page's terminal. That spans the start request (machines up and
answering SSH), the redirect, loading the page and xterm.js, the terminal WebSocket, SSH,
tmux and the first prompt. One untimed warm-up (fills the page cache), then N timed runs:

  t0 = just before the click on the `linux` card's Start button
  t1 = once a terminal row shows `root@...:~#` (checked on every animation frame)

Each playground is destroyed after its run, outside the timed part. Run as root:
`.venv/bin/python bench/browser_first_prompt.py --runs 5` (writes bench/results/...json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from labyard.runtime.local.names import nft_table
from labyard.services import Labyard
from labyard.settings import Settings

REPO = Path(__file__).resolve().parent.parent
IMAGES_DIR = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
CHROMIUM = os.environ.get("LABYARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PROMPT_VISIBLE = """() => [...document.querySelectorAll('.xterm-rows > div')]
    .some(row => /root@\\S+:~#/.test(row.textContent))"""
DEADLINE_MS = 60_000


@contextmanager
def private_server() -> Iterator[str]:
    """`labyard serve` on a free port with its own data dir; everything removed after."""
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-bench-web-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LABYARD_DATA_DIR": str(data_dir), "LABYARD_IMAGES_DIR": str(IMAGES_DIR)}
    env.pop("LABYARD_DATABASE_URL", None)
    command = [
        str(REPO / ".venv/bin/labyard"),
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        settings = Settings(
            data_dir=data_dir,
            images_dir=IMAGES_DIR,
            database_url=f"sqlite:///{data_dir}/labyard.db",
        )
        asyncio.run(destroy_everything(settings))
        table = nft_table(settings.instance)
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"error: labyard serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a condition under a deadline
    sys.exit("error: labyard serve did not answer within 30 s")


async def destroy_everything(settings: Settings) -> None:
    labyard = Labyard(settings)
    try:
        for playground_id in await labyard.driver.list():
            await labyard.driver.destroy(playground_id)
    finally:
        labyard.close()


def sign_up(page: Page, url: str) -> None:
    page.goto(f"{url}/signup")
    page.fill("input[name=email]", f"bench-{uuid.uuid4().hex[:8]}@example.com")
    page.fill("input[name=password]", "benchmark password")
    page.click("#signup-form button[type=submit]")
    page.wait_for_url(f"{url}/playgrounds")


def one_run(page: Page, url: str) -> float:
    """Seconds from clicking Start to the prompt; the playground is destroyed afterwards."""
    page.goto(f"{url}/catalog")
    button = page.locator('.card[data-playground="linux"] button[type=submit]')
    button.wait_for()
    started = time.perf_counter()
    button.click()
    page.wait_for_url("**/playgrounds/*", timeout=DEADLINE_MS)
    page.wait_for_function(PROMPT_VISIBLE, polling="raf", timeout=DEADLINE_MS)
    elapsed = time.perf_counter() - started
    page.evaluate(
        """async () => {
          const csrf = document.cookie.match(/labyard_csrf=([^;]*)/)[1];
          const id = location.pathname.split("/").pop();
          const headers = {"X-CSRF-Token": csrf};
          await fetch(`/api/playgrounds/${id}`, {method: "DELETE", headers});
        }"""
    )
    return elapsed


def measure(runs: int) -> dict[str, Any]:
    load_at_start = os.getloadavg()[0]
    with private_server() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        sign_up(page, url)
        one_run(page, url)  # warm-up, not counted
        samples = [one_run(page, url) for _ in range(runs)]
        version = browser.version
        browser.close()
    return {
        "metric": "click Start -> first prompt visible in the browser (s)",
        "playground": "linux",
        "runs": runs,
        "samples_s": [round(s, 3) for s in samples],
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "browser": f"chromium {version} (headless)",
        "host": platform.node(),
        "load_average_1m_at_start": round(load_at_start, 2),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/browser_first_prompt.json"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: run as root (playgrounds are runc containers)")
    result = measure(args.runs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
