"""VOD transcode: streamd's local backend (`packager.vod.transcode.transcode`) against the ffmpeg
CLI making the identical ladder from the same file, in the same run.

The source: 60 s of 1080p30 `testsrc2` with temporal noise (not trivially compressible) and a
stereo sine, H.264 (veryfast, CRF 20, ~14 Mbit/s: an upload's bit rate) + AAC, generated once
into bench/.cache. The ladder: the default VOD ladder (1080p 5M, 720p 3M, 480p 1.2M, 360p 700k,
30 fps) at ``--preset``, 6 s segments. Both sides:

- decode with FFmpeg's automatic threads, scale each rung from the source with FFmpeg's scale
  filter (swscale bicubic; the CLI as ``split``/``scale`` does), encode with libx264 (High, ABR
  with maxrate 1.5x / bufsize 2x, the preset's B-frames and lookahead, frame threads with
  x264's own count, ``keyint=100000:min-keyint=100000:open-gop=0``, IDRs forced on the 6 s
  grid), AAC-LC stereo 128k at 48 kHz, CMAF (fMP4) HLS segments and VOD playlists;
- differences: streamd encodes the audio once for all renditions, the CLI once per output
  (four times; ~1% of the work); the CLI runs the imageio-ffmpeg binary, whose libx264 is
  reported beside PyAV's.

Each run is a child process (``--child`` for streamd), so CPU-seconds are the same measure for
both: ``getrusage(RUSAGE_CHILDREN)`` around it (user + system), and wall time around it. Runs
alternate (streamd, CLI, streamd, ...); medians over ``--repeats``. Quality: per rung, PSNR
(luma and FFmpeg's weighted average) of the output against the source scaled to the rung's
size (bicubic), frames paired by index, computed the same way for both with
ffmpeg's ``psnr`` filter (from the first repeat: x264's output does not depend on thread
timing), and the bit rate each achieved. One JSON document on stdout; progress on stderr.

    .venv/bin/python bench/vod_transcode.py --output bench/results/vod_transcode.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

import av  # noqa: E402
import imageio_ffmpeg  # noqa: E402
from _util import log, median  # noqa: E402

from packager.ladder.codec import X264_VOD_PARAMS  # noqa: E402
from packager.types import Rung  # noqa: E402
from packager.vod.probe import ProbeResult, probe  # noqa: E402
from packager.vod.transcode import AUDIO_BITRATE, vod_ladder  # noqa: E402

CACHE = BENCH / ".cache"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
LADDER = [
    Rung("1080p", 1920, 1080, 30, 5_000_000),
    Rung("720p", 1280, 720, 30, 3_000_000),
    Rung("480p", 854, 480, 30, 1_200_000),
    Rung("360p", 640, 360, 30, 700_000),
]
TARGETS = {"cpu_ratio": 1.0, "wall_ratio": 1.0, "psnr_db": 0.3}
_PSNR = re.compile(r"\[Parsed_psnr_(\d+)[^\n]*? y:([\d.]+|inf)[^\n]*? average:([\d.]+|inf)")
_SEI_VERSION = re.compile(rb"x264 - core \d+(?: r\d+ [0-9a-f]+)?")


# --- media ---


def ensure_source(seconds: int) -> Path:
    path = CACHE / f"vod_1080p30_noise_{seconds}s.mp4"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    log(f"generating {path.name} ({seconds} s of 1080p30)")
    tmp = path.with_suffix(".tmp.mp4")
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30,noise=alls=8:allf=t+u",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", "60",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", "-b:a", "160k", str(tmp)],
        check=True,
    )  # fmt: skip
    tmp.rename(path)
    return path


def probe_of(path: Path) -> ProbeResult:
    """What the job hands the transcoder: the real probe's answer."""
    return probe(path)


def x264_version(data: bytes) -> str | None:
    match = _SEI_VERSION.search(data)
    return match.group().decode() if match else None


def versions() -> dict[str, Any]:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 64, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    frame = av.VideoFrame(64, 64, "yuv420p")
    frame.pts = 0
    pyav = b"".join(bytes(p) for p in encoder.encode(frame) + encoder.encode(None))
    sample = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=64x64:rate=30", "-frames:v", "1", "-c:v", "libx264", "-f", "h264", "-"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    cli = subprocess.run([FFMPEG, "-version"], capture_output=True, text=True, check=True)
    return {
        "pyav": av.__version__,
        "pyav_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "pyav_x264": x264_version(pyav),
        "cli": cli.stdout.splitlines()[0],
        "cli_x264": x264_version(sample.stdout),
    }


# --- the two backends ---


def cli_argv(
    source: Path, out: Path, ladder: list[Rung], preset: str, segment_s: float
) -> list[str]:
    graph = ";".join(
        [f"[0:v]split={len(ladder)}" + "".join(f"[s{i}]" for i in range(len(ladder)))]
        + [f"[s{i}]scale={r.width}:{r.height}:flags=bicubic[v{i}]" for i, r in enumerate(ladder)]
    )
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-i", str(source), "-filter_complex", graph]  # fmt: skip
    for i, rung in enumerate(ladder):
        rate = rung.video_bitrate
        directory = out / rung.name
        directory.mkdir(parents=True, exist_ok=True)
        argv += [
            "-map", f"[v{i}]", "-map", "0:a:0", "-fps_mode", "passthrough",
            "-c:v", "libx264", "-preset", preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-b:v", str(rate), "-maxrate", str(rate * 3 // 2), "-bufsize", str(rate * 2),
            "-x264-params", X264_VOD_PARAMS, "-forced-idr", "1",
            "-force_key_frames", f"expr:gte(t,n_forced*{segment_s})",
            "-c:a", "aac", "-b:a", str(AUDIO_BITRATE), "-ac", "2", "-ar", "48000",
            "-f", "hls", "-hls_time", str(segment_s), "-hls_playlist_type", "vod",
            "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
            "-hls_segment_filename", str(directory / "seg_%d.m4s"),
            str(directory / "vod.m3u8"),
        ]  # fmt: skip
    return argv


def ours_argv(source: Path, out: Path, preset: str, segment_s: float) -> list[str]:
    return [sys.executable, __file__, "--child", "--source", str(source), "--out", str(out),
            "--preset", preset, "--segment-s", str(segment_s)]  # fmt: skip


def child_main(args: argparse.Namespace) -> None:
    from packager.vod.transcode import transcode

    source = Path(args.source)
    start = time.monotonic()
    result = transcode(
        source, Path(args.out), probe_of(source), LADDER, preset=args.preset,
        segment_s=args.segment_s,
    )  # fmt: skip
    print(json.dumps({"transcode_wall_s": round(time.monotonic() - start, 2),
                      "duration_s": result.duration_s}))  # fmt: skip


def measured(argv: list[str]) -> dict[str, Any]:
    """Run a child to completion: its CPU (user + system, all threads) and wall seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({run.returncode}): {run.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out: dict[str, Any] = {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2)}
    if run.stdout.strip():
        out.update(json.loads(run.stdout.strip().splitlines()[-1]))
    return out


# --- quality ---


def psnr(source: Path, out: Path, ladder: list[Rung], fps: Fraction) -> dict[str, dict[str, float]]:
    """PSNR of each rung's playlist against the source scaled to its size, one ffmpeg run.

    Frames are paired by index (time base 1/fps and pts = n on both inputs): streamd's
    timestamps are whole milliseconds, and the psnr filter pairs a frame stamped 33 ms with
    the source frame before the one at 33.3 ms (so would a float `setpts=N/30/TB`, which
    truncates 14999.99 to 14999)."""
    reset = f"settb={fps.denominator}/{fps.numerator},setpts=N"
    argv = [FFMPEG, "-hide_banner", "-nostdin", "-i", str(source)]
    for rung in ladder:
        argv += ["-i", str(out / rung.name / "vod.m3u8")]
    n = len(ladder)
    parts = [f"[0:v]{reset},split={n}" + "".join(f"[r{i}]" for i in range(n))]
    for i, rung in enumerate(ladder):
        parts += [
            f"[r{i}]scale={rung.width}:{rung.height}:flags=bicubic[ref{i}]",
            f"[{i + 1}:v]{reset}[d{i}]",
            f"[d{i}][ref{i}]psnr[p{i}]",
        ]
    argv += ["-filter_complex", ";".join(parts)]
    for i in range(n):
        argv += ["-map", f"[p{i}]", "-f", "null", "-"]
    run = subprocess.run(argv, capture_output=True, text=True, check=True)
    found = {int(m[0]): (m[1], m[2]) for m in _PSNR.findall(run.stderr)}
    # The filters are numbered in graph order: psnr is every third one after the split.
    indexes = sorted(found)
    if len(indexes) != n:
        raise RuntimeError(f"expected {n} PSNR lines: {run.stderr[-2000:]}")
    return {
        rung.name: {"y": float(found[k][0]), "average": float(found[k][1])}
        for rung, k in zip(ladder, indexes, strict=True)
    }


def bitrates(out: Path, ladder: list[Rung], duration_s: float) -> dict[str, int]:
    """Each rendition's bit rate over the file's duration: its segments' bytes (both sides
    carry the same audio, so the video difference shows)."""
    return {
        rung.name: round(
            sum(p.stat().st_size for p in (out / rung.name).glob("seg_*.m4s")) * 8 / duration_s
        )
        for rung in ladder
    }


# --- main ---


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--segment-s", type=float, default=6.0)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    source = ensure_source(args.seconds)
    probe = probe_of(source)
    ladder = vod_ladder(LADDER, probe.width, probe.height)
    runs: dict[str, list[dict[str, Any]]] = {"streamd": [], "cli": []}
    quality: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vod-bench-") as tmp:
        for repeat in range(args.repeats):
            # Alternate which runs first, so a drift in the machine (thermal, a neighbour)
            # does not always land on the same side.
            order = ("streamd", "cli") if repeat % 2 == 0 else ("cli", "streamd")
            for system in order:
                out = Path(tmp) / system
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                if system == "streamd":
                    argv = ours_argv(source, out, args.preset, args.segment_s)
                else:
                    argv = cli_argv(source, out, ladder, args.preset, args.segment_s)
                log(f"run {repeat + 1}/{args.repeats}: {system}")
                result = measured(argv)
                log(f"  {result}")
                runs[system].append(result)
                if repeat == 0:
                    log(f"  PSNR of {system}")
                    quality[system] = {
                        "psnr": psnr(source, out, ladder, probe.fps or Fraction(30)),
                        "bitrate": bitrates(out, ladder, probe.duration_s),
                    }

    summary: dict[str, dict[str, Any]] = {}
    for system, results in runs.items():
        summary[system] = {
            "cpu_s": median(r["cpu_s"] for r in results),
            "wall_s": median(r["wall_s"] for r in results),
            "cpu_s_runs": [r["cpu_s"] for r in results],
            "wall_s_runs": [r["wall_s"] for r in results],
            **quality[system],
        }
    ours, cli = summary["streamd"], summary["cli"]
    psnr_delta = {
        rung.name: {
            key: round(ours["psnr"][rung.name][key] - cli["psnr"][rung.name][key], 3)
            for key in ("y", "average")
        }
        for rung in ladder
    }
    cpu_ratio = ratio(ours["cpu_s"], cli["cpu_s"])
    wall_ratio = ratio(ours["wall_s"], cli["wall_s"])
    ratios = {
        "cpu": cpu_ratio,
        "wall": wall_ratio,
        "bitrate": {r.name: ratio(ours["bitrate"][r.name], cli["bitrate"][r.name]) for r in ladder},
    }
    document = {
        "benchmark": "vod_transcode",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": versions(),
        "source": {
            "file": f"bench/.cache/{source.name}",
            "duration_s": probe.duration_s,
            "size": f"{probe.width}x{probe.height}",
            "fps": str(probe.fps),
            "bit_rate": probe.bit_rate,
        },
        "ladder": [
            {
                "name": r.name,
                "size": f"{r.width}x{r.height}",
                "fps": r.fps,
                "video_bitrate": r.video_bitrate,
            }
            for r in ladder
        ],
        "preset": args.preset,
        "segment_s": args.segment_s,
        "repeats": args.repeats,
        "streamd": ours,
        "cli": cli,
        "ratios": ratios,
        "psnr_delta_db": psnr_delta,
        "targets": {
            "cpu_ratio_le_1": cpu_ratio is not None and cpu_ratio <= TARGETS["cpu_ratio"],
            "wall_ratio_le_1": wall_ratio is not None and wall_ratio <= TARGETS["wall_ratio"],
            "psnr_within_0_3_db": all(
                abs(d["average"]) <= TARGETS["psnr_db"] for d in psnr_delta.values()
            ),
        },
    }
    text = json.dumps(document, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
