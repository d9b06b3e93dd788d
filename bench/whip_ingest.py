"""CPU per WHIP publisher against the same media over RTMP, through ``streamd serve``.

One ``streamd serve`` per system and count, with its default settings but the ladder off
(``STREAMD_HLS_LADDER=none``; recording and posters on), takes N publishers of one pre-encoded
20 s clip, looped: 1920x1080 30 fps H.264 (x264 veryfast, Main profile, no B-frames, a
keyframe every 2 s, 4.5 Mbit/s, as OBS sends over WHIP) with 48 kHz audio:

- ``rtmp``: N ``ffmpeg -re -stream_loop -1 -c copy`` publishers (the clip's AAC audio);
- ``whip``: N aiortc publishers in one helper process (this script, ``--publish``), sending the
  clip's encoded frames as they are (no encoding: aiortc packetizes them) with its Opus audio,
  paced in real time, to ``POST /whip``; streamd takes them through aiortc (SRTP, jitter
  buffer, NACK), passes the H.264 through and transcodes Opus to AAC.

After ``--warmup`` seconds, serve's CPU seconds (its process tree) are read over ``--seconds``:
reported per publisher and per stream-minute, and the ratio WHIP / RTMP at each N (target
<= 2). "Real time": every live's source playlist gained at least 95 % of the wall time in
media over the window, and no consumer dropped anything.

    .venv/bin/python bench/whip_ingest.py --ns 1,10 --seconds 30 \
        --output bench/results/whip_ingest.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import imageio_ffmpeg
from _util import (
    cpu_seconds,
    emit,
    log,
    median,
    process_tree,
    streamd_cli,
    streamd_env,
    wait_until,
)

REPO = Path(__file__).resolve().parent.parent
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
PASSWORD = "correct horse battery staple"
CLIP_S = 20


def make_clip(folder: Path) -> dict[str, Path]:
    """The clip as RTMP sends it (FLV: H.264 + AAC) and as WHIP sends it (Annex B + Ogg Opus)."""
    video = folder / "clip.h264"
    flv, opus = folder / "clip.flv", folder / "clip.ogg"
    source = [
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=1920x1080:rate=30:duration={CLIP_S}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={CLIP_S}",
    ]
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", *source, "-c:v", "libx264", "-preset", "veryfast",
         "-profile:v", "main", "-bf", "0", "-g", "60", "-keyint_min", "60", "-sc_threshold",
         "0", "-b:v", "4500k", "-maxrate", "4500k", "-bufsize", "9000k", "-pix_fmt",
         "yuv420p", "-x264-params", "repeat-headers=1", "-c:a", "aac", "-b:a", "128k",
         "-f", "flv", str(flv)],
        check=True,
    )  # fmt: skip
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(flv), "-map", "0:v", "-c", "copy",
                    "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(video)],
                   check=True)  # fmt: skip
    subprocess.run([FFMPEG, "-v", "error", "-y", *source[4:], "-c:a", "libopus", "-b:a", "128k",
                    "-frame_duration", "20", str(opus)], check=True)  # fmt: skip
    return {"h264": video, "flv": flv, "opus": opus}


# --- the WHIP publishers (a helper process: python bench/whip_ingest.py --publish ...) ---


async def publish_all(url: str, keys: list[str], h264: Path, opus: Path) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamTrack

    with av.open(str(h264), format="h264") as container:
        video = [bytes(p) for p in container.demux(video=0) if p.size]
    with av.open(str(opus)) as container:
        audio = [bytes(p) for p in container.demux(audio=0) if p.size]

    class Looped(MediaStreamTrack):
        """The clip's frames, looped, in real time from the track's first frame on."""

        def __init__(self, kind: str, frames: list[bytes], rate: Fraction) -> None:
            super().__init__()
            self.kind, self.frames, self.period, self.n = kind, frames, rate, 0
            self.start: float | None = None

        async def recv(self) -> av.Packet[Any]:
            n = self.n
            self.n += 1
            if self.start is None:
                self.start = time.monotonic()
            await asyncio.sleep(max(0.0, self.start + float(n * self.period) - time.monotonic()))
            packet = av.Packet(self.frames[n % len(self.frames)])
            packet.pts = n
            packet.time_base = self.period
            return packet

    async def one(key: str) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(Looped("video", video, Fraction(1, 30)), direction="sendonly")
        pc.addTransceiver(Looped("audio", audio, Fraction(1, 50)), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(url, content=pc.localDescription.sdp, headers={
                "Content-Type": "application/sdp", "Authorization": f"Bearer {key}"})  # fmt: skip
        if answer.status_code != 201:
            raise SystemExit(f"WHIP refused: {answer.status_code} {answer.text}")
        await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
        return pc

    pcs = [await one(key) for key in keys]
    print(json.dumps({"ready": len(pcs)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until told
    for pc in pcs:
        await pc.close()


# --- the measurement ---


def source_playlist(base: str, live_id: int) -> str:
    """The URL of the live's source rendition playlist (its broadcast's folder, from the
    master playlist)."""
    master = httpx.get(f"{base}/hls/{live_id}/master.m3u8", timeout=10)
    master.raise_for_status()
    uris = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    source = [uri for uri in uris if "source" in uri]
    return f"{base}/hls/{live_id}/{(source or uris)[0]}"


def media_seconds(url: str) -> float:
    """Media in a live playlist so far (its window slides: sequence x duration)."""
    text = httpx.get(url, timeout=10).text
    sequence = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", text)]
    dropped = int(sequence.group(1)) if sequence else 0
    target = re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)
    # Segments that slid out were about the target each (keyframes every 2 s on a 2 s target).
    return dropped * (int(target.group(1)) if target else 2) + sum(durations)


def run(system: str, n: int, clip: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="streamd-bench-whip-") as tmp:
        env = streamd_env(Path(tmp) / "var", STREAMD_HLS_LADDER="none")
        streamd_cli(env, "user", "create", "--username", "bench", "--email", "b@example.com",
                    "--password-stdin", "--role", "creator", stdin=PASSWORD + "\n")  # fmt: skip
        lives = [
            json.loads(streamd_cli(env, "live", "create", "--user", "bench", "--title", f"l{i}"))
            for i in range(n)
        ]
        base = f"http://127.0.0.1:{env['STREAMD_HTTP_PORT']}"
        serve = subprocess.Popen([sys.executable, "-m", "streamd", "serve"], env=env, cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        publishers: list[subprocess.Popen[str]] = []
        try:
            wait_until("serve", lambda: httpx.get(f"{base}/health").status_code == 200, 60,
                       (httpx.HTTPError,))  # fmt: skip
            if system == "rtmp":
                for live in lives:
                    publishers.append(subprocess.Popen(
                        [FFMPEG, "-v", "error", "-re", "-stream_loop", "-1", "-i",
                         str(clip["flv"]), "-c", "copy", "-f", "flv",
                         f"rtmp://127.0.0.1:{env['STREAMD_RTMP_PORT']}/live/{live['stream_key']}"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, text=True,
                    ))  # fmt: skip
            else:
                helper = subprocess.Popen(
                    [sys.executable, __file__, "--publish", f"{base}/whip", str(clip["h264"]),
                     str(clip["opus"]), *[live["stream_key"] for live in lives]],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                publishers.append(helper)
                assert helper.stdout is not None
                ready = json.loads(helper.stdout.readline() or "{}")
                if ready.get("ready") != n:
                    raise SystemExit(f"the WHIP publishers did not start: {ready}")

            playlists: list[str] = []

            def on_air() -> bool:
                playlists[:] = [source_playlist(base, live["id"]) for live in lives]
                return all(media_seconds(url) > 0 for url in playlists)

            wait_until("every live's playlist", on_air, 60, (httpx.HTTPError,))
            time.sleep(args.warmup)
            pids = process_tree(serve.pid)
            before_cpu = sum(cpu_seconds(p) for p in pids)
            before_publishers = sum(cpu_seconds(p.pid) for p in publishers)
            before_media = [media_seconds(url) for url in playlists]
            started = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - started
            cpu = sum(cpu_seconds(p) for p in pids) - before_cpu
            publishers_cpu = sum(cpu_seconds(p.pid) for p in publishers) - before_publishers
            gained = [media_seconds(url) - b
                      for url, b in zip(playlists, before_media, strict=True)]  # fmt: skip
            metrics = httpx.get(f"{base}/metrics").text
            pattern = r"^streamd_ingest_consumer_drops_total\{[^}]*\} ([\d.e+]+)$"
            drops = sum(float(v) for v in re.findall(pattern, metrics, re.M))
        finally:
            for publisher in publishers:
                if publisher.stdin is not None:
                    publisher.stdin.close()
                publisher.terminate()
                publisher.wait(timeout=30)
            serve.terminate()
            serve.wait(timeout=60)
    realtime = min(gained) / wall
    result = {
        "system": system, "publishers": n, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
        "cpu_s_per_stream_minute": round(cpu / n / wall * 60, 3),
        "cpu_share_per_stream": round(cpu / n / wall, 4),
        "media_per_wall_min": round(realtime, 3), "consumer_drops": drops,
        "publishers_cpu_share": round(publishers_cpu / wall, 3),
        "real_time": realtime >= 0.95 and drops == 0,
    }  # fmt: skip
    log(json.dumps(result))
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--publish":
        url, h264, opus, *keys = sys.argv[2:]
        asyncio.run(publish_all(url, keys, Path(h264), Path(opus)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", default="1,10", help="publisher counts")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    counts = [int(n) for n in args.ns.split(",")]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="streamd-bench-clip-") as tmp:
        clip = make_clip(Path(tmp))
        for repeat in range(args.repeats):
            for n in counts:
                order = ["rtmp", "whip"] if repeat % 2 == 0 else ["whip", "rtmp"]
                runs += [run(system, n, clip, args) for system in order]
    summary: dict[str, Any] = {}
    for n in counts:
        per = {s: median(r["cpu_share_per_stream"] for r in runs
                         if r["system"] == s and r["publishers"] == n)
               for s in ("rtmp", "whip")}  # fmt: skip
        summary[str(n)] = {
            "cpu_share_per_stream": per,
            "ratio_whip_vs_rtmp": round(per["whip"] / per["rtmp"], 2)
            if per["whip"] and per["rtmp"] else None,
            "whip_real_time": all(r["real_time"] for r in runs
                                  if r["system"] == "whip" and r["publishers"] == n),
        }  # fmt: skip
    report = {
        "benchmark": "whip_ingest",
        "settings": "streamd serve defaults with STREAMD_HLS_LADDER=none (recording, posters on);"
        f" 1080p30 H.264 Main 4.5 Mbit/s no B-frames, {CLIP_S} s clip looped; RTMP: ffmpeg -re "
        "-c copy with AAC; WHIP: aiortc sending the encoded frames with Opus, one helper process",
        "target_ratio": 2.0,
        "summary": summary,
        "runs": runs,
    }
    emit(report, args.output)


if __name__ == "__main__":
    main()
