"""Headless Chromium publishing over WHIP to ``streamd serve``: Chromium's own WebRTC stack (its
H.264 encoder, its offer without candidates, its sender reports) -> HLS.

- The fake camera and microphone (``--use-fake-device-for-media-stream``) -> every rendition
  decodes with the ffmpeg CLI.
- A canvas that flashes white at each whole second and a Web Audio tone that starts at each
  whole second, both from the page's one clock -> the flashes and tones land within 100 ms of
  each other in every rendition.

The publishing page is the test's own few lines of JavaScript on streamd's origin (what a
browser publisher writes: getUserMedia, an offer, a POST, the answer). Nothing is mocked.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import imageio_ffmpeg
import m3u8
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.browser_helpers import CHROMIUM, CHROMIUM_ARGS, Platform, start_platform
from tests.whip_client import marks

pytestmark = pytest.mark.slow

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SECONDS = 9

# Publishes the stream made by `source` (a JS expression giving a MediaStream) for `seconds`,
# then ends the session; returns what happened.
PUBLISH_JS = """
async ([key, seconds, source]) => {
  const stream = await (new Function('return (async () => ' + source + ')()'))();
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: 'sendonly'});
  await pc.setLocalDescription(await pc.createOffer());
  const response = await fetch('/whip', {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Authorization': 'Bearer ' + key, 'Content-Type': 'application/sdp'}});
  if (response.status !== 201) return {status: response.status, body: await response.text()};
  await pc.setRemoteDescription({type: 'answer', sdp: await response.text()});
  const connected = await new Promise(resolve => {
    const timer = setTimeout(() => resolve(false), 15000);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') { clearTimeout(timer); resolve(true); }
    };
  });
  await new Promise(resolve => setTimeout(resolve, seconds * 1000));
  const stats = [];
  (await pc.getStats()).forEach(s => { if (s.type === 'outbound-rtp') stats.push(
    {kind: s.kind, codec: s.codecId, frames: s.framesEncoded, keyframes: s.keyFramesEncoded,
     plis: s.pliCount, nacks: s.nackCount}); });
  const location = response.headers.get('Location');
  const ended = await fetch(location, {method: 'DELETE',
    headers: {'Authorization': 'Bearer ' + key}});
  pc.close();
  stream.getTracks().forEach(t => t.stop());
  return {status: 201, connected, deleted: ended.status, stats};
}
"""

FAKE_CAMERA = "navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: true})"

# One clock for both marks: the canvas is drawn white for one frame period after each whole
# second of `performance.now()`, and the oscillator's gain is raised at the same instants
# (scheduled on the AudioContext's clock, mapped from the same `performance.now()`).
MARKED = """
(async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 360;
  const g = canvas.getContext('2d');
  const start = performance.now();
  const draw = () => {
    const t = (performance.now() - start) / 1000;
    g.fillStyle = (t % 1) < 0.034 ? '#fff' : '#000';
    g.fillRect(0, 0, 640, 360);
    requestAnimationFrame(draw);
  };
  draw();
  setInterval(draw, 5);  // headless pages throttle requestAnimationFrame
  const video = canvas.captureStream(30).getVideoTracks()[0];
  const audio = new AudioContext();
  await audio.resume();
  const osc = audio.createOscillator();
  osc.frequency.value = 1000;
  const gain = audio.createGain();
  gain.gain.value = 0;
  const sink = audio.createMediaStreamDestination();
  osc.connect(gain).connect(sink);
  osc.start();
  const offset = audio.currentTime - (performance.now() - start) / 1000;
  for (let s = 1; s < 40; s++) {
    gain.gain.setValueAtTime(0.5, s + offset);
    gain.gain.setValueAtTime(0, s + 0.1 + offset);
  }
  return new MediaStream([video, sink.stream.getAudioTracks()[0]]);
})()
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--use-fake-device-for-media-stream",
                  "--use-fake-ui-for-media-stream"],
        )  # fmt: skip
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    yield from start_platform(
        STREAMD_HLS_LADDER="240p:426x240@30:400k",
        STREAMD_HLS_WINDOW="30",
        STREAMD_HLS_RECONNECT_WINDOW="2",
        STREAMD_HLS_LADDER_SHEDDING="false",
    )


def new_live(platform: Platform, title: str) -> dict[str, str]:
    created = platform.cli("live", "create", "--user", "root", "--title", title)
    return dict(json.loads(created.stdout))


def publish(page: Page, platform: Platform, live: dict[str, str], source: str) -> str:
    """Publish from the page and wait for the live to end; the master playlist's URL."""
    page.goto(platform.url + "/")
    result = page.evaluate(PUBLISH_JS, [live["stream_key"], SECONDS, source])
    assert result["status"] == 201 and result["connected"], result
    assert result["deleted"] == 200, result
    video = [s for s in result["stats"] if s["kind"] == "video"]
    assert video and video[0]["frames"] > SECONDS * 10, result
    deadline = time.monotonic() + 60
    while httpx.get(f"{platform.url}/api/lives/{live['id']}").json()["status"] != "ended":
        assert time.monotonic() < deadline, "the live never ended"
        time.sleep(0.2)
    return f"{platform.url}/hls/{live['id']}/master.m3u8"


def renditions(master_url: str) -> list[str]:
    master = m3u8.loads(httpx.get(master_url).text)
    base = master_url.rsplit("/", 1)[0]
    return [f"{base}/{p.uri.rsplit('/', 1)[0]}" for p in master.playlists]


def test_chromium_fake_camera_over_whip_becomes_hls_that_decodes(
    browser: Browser, platform: Platform
) -> None:
    page = browser.new_page()
    try:
        master_url = publish(page, platform, new_live(platform, "camera"), FAKE_CAMERA)
    finally:
        page.close()
    variants = renditions(master_url)
    assert sorted(v.rsplit("/", 1)[1] for v in variants) == ["240p", "source"]
    for index, variant in enumerate(variants):
        playlist = m3u8.loads(httpx.get(f"{variant}/live.m3u8").text)
        assert sum(s.duration for s in playlist.segments) > SECONDS - 3, variant
        # Keyframes asked for on the segment grid: Chromium sends few on its own.
        assert max(s.duration for s in playlist.segments) < 3.5, playlist.dumps()
        played = subprocess.run(
            [FFMPEG, "-hide_banner", "-v", "warning", "-nostdin", "-i", master_url,
             "-map", f"0:v:{index}", "-map", "0:a:0", "-f", "null", "-"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert played.returncode == 0 and played.stderr == "", (variant, played.stderr)


def test_chromium_publish_keeps_audio_and_video_in_sync(
    browser: Browser, platform: Platform
) -> None:
    page = browser.new_page()
    try:
        master_url = publish(page, platform, new_live(platform, "marks"), MARKED)
    finally:
        page.close()
    for variant in renditions(master_url):
        flashes, beeps = marks(variant)
        assert len(flashes) >= 5 and len(beeps) >= 5, (variant, flashes, beeps)
        offsets = [min(abs(f - b) for b in beeps) for f in flashes]
        print(variant, "A/V offsets (s):", [round(o, 3) for o in offsets])
        assert max(offsets) < 0.1, (variant, flashes, beeps)
