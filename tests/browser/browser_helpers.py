"""A real ``streamd serve`` (embedded PostgreSQL, default settings but a small ladder and short
report intervals) and headless Chromium from Debian's packages, driven by Playwright.

Playwright's own browser download cannot work here, so Chromium is Debian's (/usr/bin/chromium,
installed by ./dev test). Pages are checked as a user sees them: no test talks to the app's
JavaScript, only to the DOM, the network and the media element.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import imageio_ffmpeg
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

from tests.helpers import REPO, ServeProcess, cli_env, run_cli

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = REPO / "web" / "ui" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("STREAMD_TEST_ARTIFACTS", REPO / "var" / "test-artifacts"))
PASSWORD = "correct horse battery staple"
# As the project's probe found: without these Chromium keeps dialling Google's hosts, which a
# closed network refuses many times a second.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage",
]  # fmt: skip


@dataclass
class Platform:
    server: ServeProcess
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def rtmp_port(self) -> int:
        return int(self.server.env["STREAMD_RTMP_PORT"])

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = run_cli(*args, env=self.env, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done

    def mail_link(self, address: str, kind: str) -> str:
        mail = self.cli("mail", "show", "--to", address, "--kind", kind).stdout
        match = re.search(r"https?://\S+/(?:verify-email|reset-password)\?token=\S+", mail)
        assert match, mail
        return match.group(0)


def start_platform(**settings: str) -> Iterator[Platform]:
    """``streamd serve`` on a fresh data directory, with an admin made by the CLI (the way an
    operator makes the first one). Not under pytest's tmp_path: see test_serve_ladder.py."""
    with tempfile.TemporaryDirectory(prefix="streamd-browser-") as tmp:
        env = cli_env(Path(tmp) / "var", **settings)
        made = run_cli(
            "user", "create", "--username", "root", "--email", "root@example.com",
            "--password-stdin", "--role", "admin", env=env, stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        server = ServeProcess(env)
        platform = Platform(server, env)
        assert server.proc.stderr is not None
        reader = threading.Thread(
            target=lambda: platform.log.extend(server.proc.stderr or []), daemon=True
        )
        reader.start()
        try:
            server.wait_healthy()
            yield platform
        finally:
            server.stop()
            reader.join(timeout=10)


class PageWatch:
    """What went wrong in a page while a test drove it: uncaught errors, missing
    translations (the app logs ``[i18n] missing``), failed requests of the app itself."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.missing_keys: list[str] = []

    def attach(self, page: Page) -> Page:
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("console", self._console)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if "[i18n] missing" in message.text:
            self.missing_keys.append(message.text)

    def check(self) -> None:
        assert not self.missing_keys, self.missing_keys
        assert not self.errors, self.errors


def new_context(browser: Browser, base_url: str, *, width: int = 1440, locale: str = "en-US",
                height: int = 900) -> BrowserContext:  # fmt: skip
    return browser.new_context(
        base_url=base_url, viewport={"width": width, "height": height}, locale=locale,
        device_scale_factor=1,
    )  # fmt: skip


def axe_violations(page: Page) -> list[dict[str, object]]:
    """axe-core (from the web app's npm dev dependencies) run in the page: the serious and
    critical violations."""
    # Evaluated over the DevTools protocol: the app's CSP (script-src 'self') would refuse a
    # <script> tag, and it stays on for the page under test.
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def publisher(rtmp_url: str, seconds: int) -> subprocess.Popen[bytes]:
    """OBS-like: 640x360 H.264 at 30 fps, a keyframe every 2 s, AAC audio, in real time."""
    return subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
         "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "60",
         "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-b:v", "800k",
         "-c:a", "aac", "-b:a", "96k", "-f", "flv", rtmp_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def json_of(text: str) -> dict[str, object]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value
