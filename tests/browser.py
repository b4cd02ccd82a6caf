"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
commands on the browser's fd 3, replies and events on its fd 4, NUL-separated JSON), so a test can
see every request a page makes and which ones failed — no WebDriver, no websocket library."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


class Browser:
    def __init__(self, chromium: str, width: int = 1280, height: int = 900):
        commands_read, commands_write = os.pipe()
        replies_read, replies_write = os.pipe()

        def on_fds_3_and_4():  # in the child: dup first, so dup2 never meets its own fd (which would keep CLOEXEC)
            commands, replies = os.dup(commands_read), os.dup(replies_write)
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self.process = subprocess.Popen([chromium, *FLAGS, "--remote-debugging-pipe", f"--window-size={width},{height}",
                                         "about:blank"], preexec_fn=on_fds_3_and_4, close_fds=False,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(replies_write)
        self.commands = os.fdopen(commands_write, "wb", buffering=0)
        self.replies = os.fdopen(replies_read, "rb", buffering=0)
        self.buffer, self.next_id, self.events = b"", 0, []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Network", "Page", "Runtime"):
            self.send(f"{domain}.enable", session=True)

    def _message(self) -> dict:
        while b"\0" not in self.buffer:
            chunk = self.replies.read(1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, session: bool = False, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.commands.write(json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str) -> dict:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._message())
        return next(e for e in self.events if e.get("method") == event)

    def load(self, url: str) -> None:
        self.send("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True)["result"]["value"]

    def screenshot(self, path: Path) -> None:
        shot = self.send("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def failures(self) -> list[dict]:
        return [e["params"] for e in self.events if e.get("method") == "Network.loadingFailed"]

    def close(self) -> None:
        """Ask the browser to quit (it may exit before it answers), then reap it."""
        try:
            self.commands.write(json.dumps({"id": 0, "method": "Browser.close", "params": {}}).encode() + b"\0")
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            self.commands.close()
            self.replies.close()
