"""Refresh docs/asset-graph.png: the Dagster asset graph, as `billing dev` serves it,
photographed by headless Chromium.

Chromium is driven over its DevTools protocol (a plain `--screenshot` cannot dismiss
Dagster's first-visit dialog or open the asset groups): the script opens the lineage
page, skips the dialog, expands the rating models, usage and catalog groups, reloads so the graph is
zoomed to fit, hides the side panels and takes the picture.

    .venv/bin/python scripts/screenshot_asset_graph.py [--out docs/asset-graph.png]

Uses the same settings as `billing dev` (BILLING_DATABASE_DSN, or the embedded server in
BILLING_DATA_DIR: run `make demo` first so the graph shows materialized assets). Needs
`chromium` on PATH (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BILLING = str(Path(sys.executable).with_name("billing"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, dev: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dev.poll() is not None:
            sys.exit(f"error: billing dev exited with code {dev.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"error: the Dagster UI did not answer at {url} within {timeout:.0f} s")


def stop(dev: subprocess.Popen[bytes]) -> None:
    """`dagster dev` stops on SIGINT (it ignores SIGTERM); `billing dev` waits for it."""
    if dev.poll() is None:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()


EXPANDED_GROUPS = ("dbt_intermediate", "usage", "catalog")
PAGE_SETTLE_SECONDS = 8.0

_CLICK_BUTTON = (
    "[...document.querySelectorAll('button')].find(b => b.textContent.trim() === %s)?.click()"
)
_EXPAND_GROUP = """(() => {
  for (const icon of document.querySelectorAll('[aria-label=unfold_more]')) {
    if (icon.parentElement.parentElement.textContent.trim() === %s) {
      (icon.closest('button,[role=button]') || icon.parentElement).click();
      return true;
    }
  }
  return false;
})()"""


class DevTools:
    """The few DevTools protocol calls the picture needs, over one page's websocket."""

    def __init__(self, websocket: Any) -> None:
        self.ws = websocket
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(PAGE_SETTLE_SECONDS)


def photograph(chromium: str, url: str, width: int, height: int) -> bytes:
    from websockets.sync.client import connect

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="billing-chromium-") as profile:
        browser = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            pages = _json(f"http://127.0.0.1:{port}/json", browser)
            page = next(p for p in pages if p["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=None) as websocket:
                tools = DevTools(websocket)
                # The graph renders only what is in view and re-zooms after each click,
                # so each group is expanded from a fresh load (which fits the graph).
                for group in EXPANDED_GROUPS:
                    tools.open(url)
                    tools.evaluate(_CLICK_BUTTON % json.dumps("Skip"))
                    for _ in range(10):
                        if tools.evaluate(_EXPAND_GROUP % json.dumps(group)):
                            break
                        time.sleep(1)
                tools.open(url)  # the UI remembers the groups and fits the graph on load
                tools.evaluate(_CLICK_BUTTON % json.dumps("Hide navigation"))
                tools.evaluate(
                    "document.querySelector('[aria-label=panel_show_right]')"
                    "?.closest('button')?.click()"
                )
                time.sleep(3)
                shot = tools.call("Page.captureScreenshot", format="png")
        finally:
            browser.terminate()
            browser.wait(timeout=30)
    return base64.b64decode(shot["data"])


def _json(url: str, browser: subprocess.Popen[bytes]) -> Any:
    for _ in range(150):
        if browser.poll() is not None:
            sys.exit(f"error: chromium exited with code {browser.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except OSError:
            time.sleep(0.2)
    sys.exit("error: chromium's DevTools endpoint did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "asset-graph.png")
    parser.add_argument("--width", type=int, default=2200)
    parser.add_argument("--height", type=int, default=1250)
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: chromium: not found on PATH (Debian: apt-get install chromium)")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dev = subprocess.Popen(
        [BILLING, "dev", "-p", str(port), "-h", "127.0.0.1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group, so SIGINT reaches dagster dev's children
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_until_up(f"{base}/server_info", dev, args.timeout)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        time.sleep(5)  # the code location loads after the server answers
        args.out.write_bytes(photograph(chromium, f"{base}/asset-groups", args.width, args.height))
    finally:
        stop(dev)
    print(f"{args.out}: {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
