"""A real headless Chromium opens the Ray dashboard through the tunnel and renders it.

Chromium is driven over the DevTools protocol (its port is on 127.0.0.1, found in the profile's
DevToolsActivePort file), so the test can give it the token the way the dashboard's own login
does: as the `ray-authentication-token` cookie. First without the cookie (the dashboard's
JavaScript asks for the token: the page came from the token-protected cluster), then with it
(the dashboard renders its navigation and the cluster's node).
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dku_ray.dashboard_tunnel import tunnel

from .support import wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000", "--remote-debugging-port=0", "about:blank"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")


class DevTools:
    """The smallest DevTools client: one page, commands answered in order."""

    def __init__(self, profile: Path) -> None:
        import websocket

        port_file = profile / "DevToolsActivePort"
        port = int(wait_for(lambda: port_file.is_file() and port_file.read_text().split()[0], 30, "DevTools port"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            page = next(t for t in json.loads(resp.read()) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == number:
                assert "error" not in message, message
                return message["result"]

    def text(self) -> str:
        result = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                           returnByValue=True)
        return str(result["result"].get("value") or "")

    def wait_text(self, *needles: str, timeout: float = 90) -> str:
        def found() -> str | None:
            text = self.text()
            return text if all(n.lower() in text.lower() for n in needles) else None

        return wait_for(found, timeout, f"page text with {needles}", interval=0.5)


@pytest.fixture
def chromium(tmp_path: Path):
    profile = tmp_path / "profile"
    proc = subprocess.Popen([CHROMIUM, f"--user-data-dir={profile}", *FLAGS], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        tools = DevTools(profile)
        yield tools
        tools.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def test_chromium_renders_the_dashboard_through_the_tunnel(secure, ray_head, chromium, tmp_path):
    with tunnel(secure.ref) as url:
        chromium.call("Page.navigate", url=url + "/")
        prompt = chromium.wait_text("token")  # the dashboard's JS asks for the cluster's token
        assert "authentication" in prompt.lower()

        chromium.call("Network.enable")
        chromium.call("Network.setCookie", name="ray-authentication-token", value=url.auth_token, url=url + "/",
                      httpOnly=True, sameSite="Strict")
        chromium.call("Page.navigate", url="about:blank")  # a fresh load, not a hash change
        chromium.call("Page.navigate", url=url + "/#/cluster")
        page = chromium.wait_text("Overview", "Jobs", "Node List", "ALIVE", "127.0.0.1")  # the local head node
        shot = chromium.call("Page.captureScreenshot", format="png")
        (tmp_path / "dashboard.png").write_bytes(base64.b64decode(shot["data"]))
        if os.environ.get("DKU_RAY_KEEP_SCREENSHOT"):
            shutil.copy(tmp_path / "dashboard.png", os.environ["DKU_RAY_KEEP_SCREENSHOT"])
        assert "authentication token required" not in page.lower()
        stats = url.tunnel.stats()
        assert stats.connections >= 3 and stats.failed == 0  # the UI loads its pieces on several connections
        time.sleep(0)  # keep the tunnel open until here
