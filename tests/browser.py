"""Headless Chromium driven over the DevTools protocol (CDP), for tests whose interface is a page.

Why CDP: Ray's dashboard takes its token from an `Authorization` header, or from the HttpOnly
cookie `ray-authentication-token` that its login dialog obtains with POST /api/authenticate
(ray/dashboard/http_server_head.py). Chromium's command line can set neither a header nor a cookie,
so the test does what the dialog does: in the page, `fetch('/api/authenticate')` with the bearer
token; the dashboard sets its own cookie, and every later request of the page carries it.

Chromium runs with its own profile folder, on a DevTools port it picks (read back from
DevToolsActivePort), listening on 127.0.0.1 only; `close()` ends that one process group.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp

CHROMIUM = "chromium"  # Debian's package, found on PATH (conftest.system_tool)


class Browser:
    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 1000):
        self.profile = profile
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.port = self._port()
        self._ids = 0

    def _port(self, timeout: float = 60.0) -> int:
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if active.exists() and active.read_text().strip():
                return int(active.read_text().split()[0])
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            time.sleep(0.2)
        raise RuntimeError("chromium did not open its DevTools port")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def run(self, coro_fn):
        """Run `coro_fn(page)` against the first page target."""
        return asyncio.run(self._with_page(coro_fn))

    async def _with_page(self, coro_fn):
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                targets = await r.json()
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(ws_url, max_msg_size=0) as ws:
                return await coro_fn(Page(ws))


class Page:
    """The few CDP commands the tests need."""

    def __init__(self, ws):
        self.ws, self._id = ws, 0

    async def send(self, method: str, **params):
        self._id += 1
        await self.ws.send_str(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str, await_promise: bool = False):
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=await_promise,
                                 returnByValue=True)
        return result["result"].get("value")

    async def text(self) -> str:
        return await self.evaluate("document.body ? document.body.innerText : ''") or ""

    async def wait_for_text(self, *needles: str, timeout: float = 60.0) -> str:
        """The page's text once it contains every needle; AssertionError with the text at the deadline.
        Runs of white space count as one space (the page's innerText collapses them)."""
        deadline = time.monotonic() + timeout
        text = ""
        wanted = [" ".join(n.split()) for n in needles]
        while time.monotonic() < deadline:
            text = await self.text()
            flat = " ".join(text.split())
            if all(n in flat for n in wanted):
                return text
            await asyncio.sleep(0.5)
        raise AssertionError(f"the page never showed {needles}; it shows:\n{text[-3000:]}")

    async def screenshot(self, path: Path) -> None:
        data = (await self.send("Page.captureScreenshot", format="png"))["data"]
        path.write_bytes(base64.b64decode(data))
