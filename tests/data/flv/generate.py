"""Regenerate the FLV samples in this folder with the ffmpeg binary of the imageio-ffmpeg wheel.

Run from the repository root: ``.venv/bin/python tests/data/flv/generate.py``. The files are
committed, so tests never run ffmpeg; encoders are not bit-exact across versions, so tests
compare against PyAV's view of the same file rather than against hard-coded frame bytes.
Each file is a few frames, kept well under 100 KB.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg

HERE = Path(__file__).resolve().parent

# 320x240 at 25 fps; 10 video frames; audio trimmed to the same 0.4 s.
V320 = "-f lavfi -i testsrc2=size=320x240:rate=25"
SINE44 = "-f lavfi -i sine=frequency=440:sample_rate=44100"

# name: ffmpeg arguments between the inputs and "-f flv <name>" (no argument has spaces).
SAMPLES: dict[str, str] = {
    # Legacy FLV: AVC (codec id 7) with B-frames, so composition times are non-zero; AAC LC.
    "h264_aac.flv": f"{V320} {SINE44} -frames:v 10 -t 0.4 -c:v libx264 -profile:v high"
    " -preset veryfast -bf 2 -g 10 -b:v 300k -c:a aac -ac 2 -b:a 64k -shortest",
    # Enhanced FLV: FourCC hvc1, CodedFrames (with SI24) and CodedFramesX; AAC mono.
    "hevc_aac.flv": f"{V320} {SINE44} -frames:v 10 -t 0.4 -c:v libx265 -preset veryfast"
    " -x265-params log-level=error:bframes=3 -g 10 -b:v 300k -c:a aac -ac 1 -b:a 48k",
    # Enhanced FLV: FourCC av01. libaom has no global header up front, so FFmpeg first writes
    # an empty SequenceStart and then the real av1C once extract_extradata found it.
    "av1.flv": f"{V320} -frames:v 10 -c:v libaom-av1 -cpu-used 8 -g 10 -b:v 300k",
    # Enhanced FLV: FourCC vp09 with a vpcC (version 1) sequence start.
    "vp9.flv": f"{V320} -frames:v 10 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -g 10"
    " -b:v 300k",
    # E-RTMP v2 multitrack: the second video (H.264 4:4:4, FourCC avc1) and the second audio
    # (mp4a) stream are sent as Multitrack/OneTrack messages with track id 1.
    "multitrack.flv": "-f lavfi -i testsrc2=size=160x120:rate=25"
    " -f lavfi -i testsrc=size=128x96:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100"
    " -map 0:v -map 1:v -map 2:a -map 2:a -frames:v 3 -t 0.12 -c:v libx264 -preset ultrafast"
    " -bf 0 -c:a aac -b:a 32k",
    # 5.1 AAC at 48 kHz: legacy AAC tags plus an Enhanced-audio MultichannelConfig message.
    "aac51.flv": "-f lavfi -i sine=frequency=440:sample_rate=48000 -t 0.1 -ac 6 -c:a aac -b:a 96k",
    # Cropping and field coding: 200x148 interlaced (frame_mbs_only_flag = 0) H.264 Main:
    # 148 lines are coded as 5 field-pair rows of 32 (160) and cropped.
    "h264_interlaced_crop.flv": "-f lavfi -i testsrc2=size=200x148:rate=25 -frames:v 2"
    " -c:v libx264 -profile:v main -preset ultrafast -x264-params interlaced=1",
    # HEVC Main 10 with a conformance window (200x150 is not a multiple of the CU size).
    "hevc_main10.flv": "-f lavfi -i testsrc2=size=200x150:rate=30 -frames:v 2"
    " -pix_fmt yuv420p10le -c:v libx265 -preset ultrafast -x265-params log-level=error",
    # AV1 10-bit: high_bitdepth = 1, codec string av01.0.xxM.10.
    "av1_10bit.flv": "-f lavfi -i testsrc2=size=160x120:rate=25 -frames:v 2"
    " -pix_fmt yuv420p10le -c:v libaom-av1 -cpu-used 8",
    # Refused codecs: legacy SoundFormat 2 (MP3) and Enhanced-audio FourCC "Opus".
    "mp3.flv": f"{SINE44} -t 0.1 -c:a libmp3lame -b:a 32k",
    "opus.flv": "-f lavfi -i sine=frequency=440:sample_rate=48000 -t 0.1 -c:a libopus -b:a 32k",
}


def main() -> None:
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    for name, args in SAMPLES.items():
        out = HERE / name
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args.split(), "-f", "flv"]
        cmd.append(str(out))
        subprocess.run(cmd, check=True, capture_output=True)
        print(f"{name}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
