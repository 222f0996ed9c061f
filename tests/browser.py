"""Open a page in a real headless Chromium (Debian's ``chromium`` package) over the DevTools protocol and
report what a person would see: a screenshot, every image's natural size, and every console error.

No Python package is needed: Chromium speaks the protocol over a pair of pipes (``--remote-debugging-pipe``:
it reads commands from fd 3 and writes replies and events to fd 4, each message JSON ending in NUL).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-pipe"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageReport:
    images: list[dict]  # one per <img>: complete, naturalWidth, naturalHeight, alt
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, failed loads
    screenshot: Path | None = None
    title: str = ""


class _Pipe:
    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self.proc, self.w, self.r = proc, write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        while True:
            reply = self._read(timeout)
            if reply.get("id") == want:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._read(timeout)
            if e.get("method") == method:
                return e
            self.events.append(e)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise EOFError("chromium closed the pipe")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)


def open_page(path: Path, screenshot: Path, width: int = 1280, height: int = 2400,
              timeout: float = 90) -> PageReport:
    """Load ``path`` (a local HTML file) in headless Chromium, wait for the load event, and return its images'
    sizes, its console errors and a ``width``×``height`` screenshot written to ``screenshot``."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()

    def child_fds() -> None:  # chromium reads fd 3, writes fd 4
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                preexec_fn=child_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        pipe = _Pipe(proc, to_chrome_w, from_chrome_r)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
            pipe.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session)
            pipe.wait_event("Page.loadEventFired", timeout)
            expr = ("JSON.stringify({title: document.title, images: [...document.images].map(i => ({complete: "
                    "i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, alt: i.alt}))})")
            value = pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                              session)["result"]["value"]
            page = json.loads(value)
            shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session, timeout=timeout)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            errors = []
            for e in pipe.events:
                m, p = e.get("method"), e.get("params", {})
                if m == "Runtime.exceptionThrown":
                    errors.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
                elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    errors.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
                elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                    errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            try:
                pipe.send("Browser.close", timeout=10)
            except (EOFError, TimeoutError, RuntimeError):
                pass
        finally:
            os.close(to_chrome_w)
            os.close(from_chrome_r)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return PageReport(images=page["images"], errors=errors, screenshot=screenshot, title=page["title"])
