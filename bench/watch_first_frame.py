"""Watch page: time from navigation to the first video frame, and the JavaScript it ships.

One ``streamd serve`` with its default settings (embedded PostgreSQL, the default ladder,
recording, posters) takes one OBS-like publisher (``ffmpeg -re``, 1280x720 30 fps H.264 with a
2 s GOP and AAC). Headless Chromium (Debian's) then opens, each time in a fresh browser context
(a first visit: empty cache):

- ``app``: the web app's watch page ``/lives/{id}`` as a viewer opens it from a link;
- ``plain-hls-light``: a bare page with a ``<video>`` and hls.js's light build (the one the app
  uses) playing the same master playlist: the least a page can do;
- ``plain-hls-full``: the same with the full hls.js build, the page most people write.

streamd serves the plain pages too, the same way as the app: its ``STREAMD_UI_DIR`` is a copy of
``web/ui/dist`` with the two pages and the two hls.js builds (and their gzip twins) added, so
both load their scripts from the same server with the same compression and their HLS requests
are the same same-origin requests. First frame: the
first ``requestVideoFrameCallback`` of the page's video element, in ms since navigation start
(``performance.now()``). Systems alternate within each round (the first one of a round changes
every round). Reported: per system the runs and the median, the ratio app / plain (target
<= 1.3), and the JavaScript each app route ships: encoded (gzip) bytes of every script response
the page loaded, as the browser received them from streamd (target <= 300 kB for the watch
page).

    .venv/bin/python bench/watch_first_frame.py --runs 9 \
        --output bench/results/watch_first_frame.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
from _util import emit, log, median, streamd_cli, streamd_env, wait_until
from playwright.sync_api import Browser, sync_playwright

REPO = Path(__file__).resolve().parent.parent
UI = REPO / "web" / "ui"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage",
]  # fmt: skip
PASSWORD = "correct horse battery staple"

FIRST_FRAME_HOOK = """
window.__firstFrame = null;
const hook = (v) => {
  if (v.__hooked) return;
  v.__hooked = true;
  v.requestVideoFrameCallback(() => {
    if (window.__firstFrame === null) window.__firstFrame = performance.now();
  });
};
new MutationObserver(() => document.querySelectorAll('video').forEach(hook))
  .observe(document, { childList: true, subtree: true });
"""

PLAIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>plain</title></head>
<body><video id="v" playsinline controls style="width:100%"></video>
<script src="/HLS"></script><script src="/NAME.js"></script></body></html>"""
PLAIN_SCRIPT = """const v = document.getElementById('v');
const h = new Hls({ lowLatencyMode: true, backBufferLength: 30 });
h.on(Hls.Events.MANIFEST_PARSED, () => v.play());
h.loadSource(location.search.slice(1));
h.attachMedia(v);
"""

HLS_BUILDS = {
    "plain-hls-light": UI / "node_modules" / "hls.js" / "dist" / "hls.light.min.js",
    "plain-hls-full": UI / "node_modules" / "hls.js" / "dist" / "hls.min.js",
}


def wait_for(what: str, check: Any, timeout: float) -> None:
    wait_until(what, check, timeout, (httpx.HTTPError,))


def ui_dir_with_plain_pages(target: Path) -> Path:
    """web/ui/dist plus, at its root, each plain page, its script and its hls.js build."""
    shutil.copytree(UI / "dist", target)
    for name, build in HLS_BUILDS.items():
        files = {
            f"{name}.html": PLAIN_PAGE.replace("HLS", build.name).replace("NAME", name),
            f"{name}.js": PLAIN_SCRIPT,
            build.name: build.read_text(),
        }
        for file, text in files.items():
            (target / file).write_text(text)
            (target / f"{file}.gz").write_bytes(gzip.compress(text.encode(), 9))
    return target


def first_frame(browser: Browser, base: str, url: str) -> float:
    context = browser.new_context(base_url=base, viewport={"width": 1440, "height": 900})
    try:
        context.add_init_script(FIRST_FRAME_HOOK)
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("() => window.__firstFrame !== null", timeout=60_000)
        return float(page.evaluate("() => window.__firstFrame"))
    finally:
        context.close()


def scripts_shipped(browser: Browser, base: str, path: str) -> dict[str, Any]:
    context = browser.new_context(base_url=base, viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        responses = []
        page.on("response", lambda response: responses.append(response))
        page.goto(path)
        page.wait_for_load_state("networkidle")
        scripts = [r for r in responses if r.request.resource_type == "script"]
        files = {}
        for response in scripts:
            sizes = response.request.sizes()
            files[response.url.rsplit("/", 1)[-1]] = {
                "encoded_bytes": sizes["responseBodySize"],
                "encoding": response.headers.get("content-encoding", "identity"),
            }
        return {"scripts": files, "gzip_bytes": sum(f["encoded_bytes"] for f in files.values())}
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="rounds (each system once per round)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="streamd-bench-watch-") as tmp:
        env = streamd_env(Path(tmp) / "var")
        env["STREAMD_UI_DIR"] = str(ui_dir_with_plain_pages(Path(tmp) / "ui"))
        streamd_cli(env, "user", "create", "--username", "bench", "--email", "bench@example.com",
            "--password-stdin", "--role", "creator", stdin=PASSWORD + "\n")  # fmt: skip
        live = json.loads(streamd_cli(env, "live", "create", "--user", "bench", "--title", "bench"))
        base = f"http://127.0.0.1:{env['STREAMD_HTTP_PORT']}"
        serve = subprocess.Popen(
            [sys.executable, "-m", "streamd", "serve"], env=env, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        errors: list[str] = []
        threading.Thread(target=lambda: errors.extend(serve.stderr or []), daemon=True).start()
        publisher: subprocess.Popen[bytes] | None = None
        try:
            wait_for("serve", lambda: httpx.get(f"{base}/health").status_code == 200, 60)
            seconds = 60 + args.runs * 3 * 12
            publisher = subprocess.Popen(
                [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                 "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
                 "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                 "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60",
                 "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-b:v", "2500k",
                 "-c:a", "aac", "-b:a", "128k", "-f", "flv",
                 f"rtmp://127.0.0.1:{env['STREAMD_RTMP_PORT']}/live/{live['stream_key']}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            master = f"/hls/{live['id']}/master.m3u8"
            source = f"{base}/hls/{live['id']}/" + "{}"

            def ready() -> bool:
                if publisher is not None and publisher.poll() is not None:
                    raise SystemExit(f"the publisher exited ({publisher.returncode})")
                text = httpx.get(base + master).text
                variants = [line for line in text.splitlines() if line and line[0] != "#"]
                if len(variants) < 2:
                    return False
                playlist = httpx.get(source.format(variants[0])).text
                return playlist.count("#EXTINF") >= 3

            wait_for("the ladder's playlists", ready, 120)
            log("live is on air; measuring")
            results: dict[str, list[float]] = {"app": [], **{name: [] for name in HLS_BUILDS}}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                     args=CHROMIUM_ARGS)  # fmt: skip
                order = list(results)
                for round_ in range(args.runs):
                    shift = round_ % len(order)
                    for name in order[shift:] + order[:shift]:
                        app = f"/lives/{live['id']}"
                        url = app if name == "app" else f"/{name}.html?{master}"
                        ms = first_frame(browser, base, url)
                        results[name].append(round(ms, 1))
                        log(f"round {round_ + 1}: {name} first frame {ms:.0f} ms")
                shipped = {path: scripts_shipped(browser, base, path)
                           for path in ("/", f"/lives/{live['id']}")}  # fmt: skip
                browser.close()
        finally:
            if publisher is not None:
                publisher.kill()
                publisher.wait()
            serve.terminate()
            serve.wait(timeout=60)

    medians = {name: median(runs) for name, runs in results.items()}
    app = medians["app"] or 0.0
    watch_js = shipped[f"/lives/{live['id']}"]["gzip_bytes"]
    report = {
        "benchmark": "watch_first_frame",
        "settings": "streamd serve defaults (default ladder, recording, posters); 1280x720p30 "
        "2.5 Mbit/s H.264 + AAC publisher; headless Chromium, fresh context per load",
        "first_frame_ms": {
            name: {"median": medians[name], "runs": runs} for name, runs in results.items()
        },
        "ratio_app_vs": {
            name: round(app / m, 3) for name, m in medians.items() if name != "app" and m
        },
        "target_ratio": 1.3,
        "js_gzip_bytes": {"/": shipped["/"]["gzip_bytes"], "/lives/:id": watch_js},
        "js_target_watch_page_bytes": 300_000,
        "scripts": {
            "/": shipped["/"]["scripts"],
            "/lives/:id": shipped[f"/lives/{live['id']}"]["scripts"],
        },
    }
    emit(report, args.output)


if __name__ == "__main__":
    main()
