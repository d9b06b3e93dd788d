"""Glass to glass: from a frame entering the publisher's encoder to Chromium showing it, over
WebRTC (WHEP, the watch page's "Low latency") and over HLS (the same page, its default).

One ``streamd serve`` with its default settings (embedded PostgreSQL, the default ladder,
recording, posters). The "camera" is this script: it writes 640x360 grey frames at 30 fps, in
real time, into ffmpeg's stdin; ffmpeg encodes them as OBS does for WebRTC (x264 veryfast,
zerolatency, no B-frames, a keyframe every 2 s) with AAC audio and publishes over RTMP. Once a
second the frame is a *mark*: its left and right halves are grey levels that encode the
mark's number (mod 100), and the script notes the wall-clock time it wrote it.

Headless Chromium (Debian's) opens the watch page ``/lives/{id}``, with the low-latency choice
set (WHEP) or not (HLS), and reads every frame its <video> presents
(``requestVideoFrameCallback``: drawn onto a small canvas, the halves' levels read back); a
mark's latency is its ``expectedDisplayTime`` (on the wall clock: ``performance.timeOrigin``)
minus the time it was written. Modes alternate round by round; each round watches for
``--seconds`` after the first mark is shown. Reported: per mode every latency and the median,
and the ratio HLS / WHEP. Target (issue 19): WHEP <= 0.5 s median on loopback.

    .venv/bin/python bench/whep_latency.py --rounds 3 --output bench/results/whep_latency.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
from _util import emit, log, median, streamd_cli, streamd_env, wait_until
from playwright.sync_api import Browser, sync_playwright

REPO = Path(__file__).resolve().parent.parent
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage",
]  # fmt: skip
PASSWORD = "correct horse battery staple"
WIDTH, HEIGHT, FPS = 640, 360, 30
BLACK = 16


def mark_levels(number: int) -> tuple[int, int]:
    """The grey levels of a mark's left and right halves: its number's units and tens."""
    return 40 + 18 * (number % 10), 40 + 18 * (number // 10 % 10)


def decode_mark(left: float, right: float) -> int | None:
    if left < 30 or right < 30:
        return None
    units, tens = round((left - 40) / 18), round((right - 40) / 18)
    if not (0 <= units <= 9 and 0 <= tens <= 9):
        return None
    return tens * 10 + units


# Every presented frame of any <video>: its halves' mean luma, and when it was shown (wall ms).
HOOK = """
window.__marks = [];
const hook = (v) => {
  if (v.__hooked) return;
  v.__hooked = true;
  const canvas = document.createElement('canvas');
  canvas.width = 8; canvas.height = 2;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  let last = false;
  const step = (now, meta) => {
    try {
      g.drawImage(v, 0, 0, 8, 2);
      const d = g.getImageData(0, 0, 8, 2).data;
      let left = 0, right = 0;
      for (let y = 0; y < 2; y++) for (let x = 0; x < 8; x++) {
        const luma = d[(y * 8 + x) * 4 + 1];  // green: closest to luma for a grey picture
        if (x < 4) left += luma; else right += luma;
      }
      left /= 8; right /= 8;
      const mark = left > 30 && right > 30;
      if (mark && !last) window.__marks.push([performance.timeOrigin + meta.expectedDisplayTime,
                                              left, right]);
      last = mark;
    } catch (e) {}
    v.requestVideoFrameCallback(step);
  };
  v.requestVideoFrameCallback(step);
};
new MutationObserver(() => document.querySelectorAll('video').forEach(hook))
  .observe(document, { childList: true, subtree: true });
"""


class Camera:
    """Writes frames into the publisher in real time; remembers when each mark was written."""

    def __init__(self, stdin: Any, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.stdin = stdin
        self.width, self.height = width, height
        self.written: dict[int, list[float]] = {}  # mark number mod 100 -> wall times
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        black = bytes([BLACK]) * (self.width * self.height)
        start = time.monotonic()
        n = 0
        while not self.stopped.is_set():
            delay = start + n / FPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if n % FPS == 0:
                number = (n // FPS) % 100
                left, right = mark_levels(number)
                row = bytes([left]) * (self.width // 2) + bytes([right]) * (self.width // 2)
                frame = row * self.height
                self.written.setdefault(number, []).append(time.time())
            else:
                frame = black
            try:
                self.stdin.write(frame)
                self.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            n += 1

    def latency(self, shown_ms: float, number: int) -> float | None:
        """Seconds from the last write of mark ``number`` before it was shown."""
        shown = shown_ms / 1000
        before = [t for t in self.written.get(number, []) if t <= shown]
        return shown - before[-1] if before else None


def watch(browser: Browser, base: str, live_id: int, mode: str, seconds: float,
          camera: Camera) -> list[float]:  # fmt: skip
    context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 800})
    try:
        choice = "1" if mode == "whep" else "0"
        context.add_init_script(f"localStorage.setItem('streamd.lowLatency', '{choice}');{HOOK}")
        page = context.new_page()
        page.goto(f"/lives/{live_id}")
        page.wait_for_function("() => window.__marks.length > 0", timeout=90_000)
        if mode == "whep" and page.locator("[data-testid=whep-player]").count() == 0:
            raise SystemExit("the watch page did not play over WHEP")
        if mode == "hls" and page.locator("[data-testid=whep-player]").count() != 0:
            raise SystemExit("the watch page played over WHEP in HLS mode")
        time.sleep(seconds)
        marks = page.evaluate("() => window.__marks")
    finally:
        context.close()
    latencies = []
    for shown, left, right in marks[1:]:  # the first is how the player started, not steady
        number = decode_mark(left, right)
        value = camera.latency(shown, number) if number is not None else None
        if value is not None:
            latencies.append(round(value, 3))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each mode once a round)")
    parser.add_argument("--seconds", type=float, default=20, help="watched per mode and round")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="streamd-bench-whep-") as tmp:
        env = streamd_env(Path(tmp) / "var")
        streamd_cli(env, "user", "create", "--username", "bench", "--email", "bench@example.com",
            "--password-stdin", "--role", "creator", stdin=PASSWORD + "\n")  # fmt: skip
        live = json.loads(streamd_cli(env, "live", "create", "--user", "bench", "--title", "bench"))
        base = f"http://127.0.0.1:{env['STREAMD_HTTP_PORT']}"
        serve = subprocess.Popen([sys.executable, "-m", "streamd", "serve"], env=env, cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        publisher: subprocess.Popen[bytes] | None = None
        camera: Camera | None = None
        results: dict[str, list[float]] = {"whep": [], "hls": []}
        try:
            wait_until("serve", lambda: httpx.get(f"{base}/health").status_code == 200, 60,
                       (httpx.HTTPError,))  # fmt: skip
            publisher = subprocess.Popen(
                [FFMPEG, "-hide_banner", "-loglevel", "error",
                 "-f", "rawvideo", "-pix_fmt", "gray", "-video_size", f"{WIDTH}x{HEIGHT}",
                 "-framerate", str(FPS), "-i", "-",
                 "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                 "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-bf", "0",
                 "-g", str(2 * FPS), "-keyint_min", str(2 * FPS), "-sc_threshold", "0",
                 "-pix_fmt", "yuv420p", "-b:v", "1500k", "-c:a", "aac", "-b:a", "128k",
                 "-f", "flv",
                 f"rtmp://127.0.0.1:{env['STREAMD_RTMP_PORT']}/live/{live['stream_key']}"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            camera = Camera(publisher.stdin)
            camera.thread.start()

            def on_air() -> bool:
                state = httpx.get(f"{base}/api/lives/{live['id']}").json()
                return bool(state["status"] == "live" and state["whep_url"])

            wait_until("the live on air", on_air, 60, (httpx.HTTPError,))
            time.sleep(8)  # a few HLS segments out, as a viewer arriving finds them
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                     args=CHROMIUM_ARGS)  # fmt: skip
                for round_ in range(args.rounds):
                    order = ["whep", "hls"] if round_ % 2 == 0 else ["hls", "whep"]
                    for mode in order:
                        got = watch(browser, base, live["id"], mode, args.seconds, camera)
                        results[mode] += got
                        log(f"round {round_ + 1}: {mode} median {median(got)} s over {len(got)}")
                browser.close()
        finally:
            if camera is not None:
                camera.stopped.set()
            if publisher is not None:
                publisher.kill()
                publisher.wait()
            serve.terminate()
            serve.wait(timeout=60)

    medians = {mode: median(values) for mode, values in results.items()}
    whep, hls = medians["whep"], medians["hls"]
    report = {
        "benchmark": "whep_latency",
        "settings": "streamd serve defaults (default ladder, recording, posters); 640x360p30 "
        "H.264 (x264 veryfast zerolatency, no B-frames, 2 s GOP) + AAC over RTMP from ffmpeg "
        "fed in real time; headless Chromium on the watch page, loopback",
        "glass_to_glass_s": {
            mode: {"median": medians[mode], "samples": len(values), "values": values}
            for mode, values in results.items()
        },
        "ratio_hls_vs_whep": round(hls / whep, 2) if hls and whep else None,
        "target_whep_median_s": 0.5,
    }
    emit(report, args.output)


if __name__ == "__main__":
    main()
