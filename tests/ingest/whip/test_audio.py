"""Opus -> AAC for WHIP audio, on real libopus packets: the AAC decodes, stays on the input's
timeline, and a gap (lost packets) is filled with silence instead of pulling audio early."""

from __future__ import annotations

import math
import threading
from array import array
from fractions import Fraction

import av

from ingest.whip.audio import RATE, OpusToAac
from media.audio_transcode import AudioTranscoder


def opus_packets(seconds: float) -> list[bytes]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = RATE, "stereo", "s16"
    encoder.time_base = Fraction(1, RATE)
    encoder.open()
    packets: list[bytes] = []
    total = int(seconds * RATE)
    for start in range(0, total, 960):
        samples = array("h")
        for n in range(start, start + 960):
            value = int(math.sin(2 * math.pi * 440 * n / RATE) * 8000)
            samples.extend((value, value))  # interleaved stereo
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate, frame.pts = RATE, start
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


def decoded_seconds(config_extradata: bytes, frames: list[bytes]) -> float:
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = config_extradata
    samples = sum(f.samples for data in frames for f in decoder.decode(av.Packet(data)))
    return samples / RATE


def test_aac_follows_the_opus_timeline() -> None:
    packets = opus_packets(2.0)
    codec = OpusToAac()
    out = []
    for i, data in enumerate(packets):
        out += codec.packet(1000 + i * 20, data)
    assert codec.config.codec == "aac" and codec.config.sample_rate == RATE
    times = [ms for ms, _ in out]
    assert times == sorted(times) and times[0] >= 1000
    # 1024-sample frames: 21.33 ms apart.
    assert abs((times[-1] - times[0]) / (len(times) - 1) - 1024 * 1000 / RATE) < 0.5
    assert decoded_seconds(codec.config.extradata, [d for _, d in out]) > 1.9


def test_a_gap_is_filled_with_silence() -> None:
    packets = opus_packets(2.0)
    codec = OpusToAac()
    out = []
    for i, data in enumerate(packets):
        if 40 <= i < 65:  # 0.5 s lost in the middle
            continue
        out += codec.packet(i * 20, data)
    assert 480 <= codec.filled_ms <= 520
    # Without the fill, the last frame would sit ~500 ms early.
    assert out[-1][0] >= 1900


def test_a_packet_that_does_not_decode_is_skipped() -> None:
    codec = OpusToAac()
    assert codec.packet(0, b"\xff\xff\xff") == []  # the decoder refuses it
    assert codec.packet(0, b"") == []  # and an empty one would end it
    out = []
    for i, data in enumerate(opus_packets(0.5)):
        out += codec.packet(20 + i * 20, data)
    assert out


def test_the_transcoder_thread_delivers_in_order() -> None:
    got: list[tuple[int, bytes]] = []
    done = threading.Event()

    def deliver(packets: list[tuple[int, bytes]]) -> None:
        got.extend(packets)
        if got and got[-1][0] > 900:
            done.set()

    transcoder = AudioTranscoder(OpusToAac(), deliver, "test-audio")
    for i, data in enumerate(opus_packets(1.2)):
        transcoder.submit(i * 20, data)
    assert done.wait(10)
    transcoder.close()
    assert [ms for ms, _ in got] == sorted(ms for ms, _ in got)
