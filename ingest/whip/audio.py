"""WebRTC's Opus -> the AAC-LC that HLS players take (Safari plays no Opus in HLS), with PyAV.

Synchronous: `AudioTranscoder` runs it on a thread of its own per publish, off the event loop.

Timing: AAC frames are laid end to end by the muxer, so the output is sample-counted from the
first packet's time. A gap in the input (lost packets, a sender's discontinuous transmission)
would then shift every later sound earlier; it is filled with silence instead, so audio stays
on the video's timeline. A packet the decoder refuses is skipped and its time filled the same way.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from fractions import Fraction

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame

from media.aac import parse_config
from media.types import AudioConfig

log = logging.getLogger(__name__)

RATE = 48_000
BITRATE = 128_000
#: A gap shorter than this is jitter, not lost audio.
GAP_MS = 30
#: A longer gap is not filled (the publisher was gone, not lossy): the timeline jumps instead.
MAX_FILL_MS = 5_000


class OpusToAac:
    def __init__(self) -> None:
        decoder = av.CodecContext.create("opus", "r")
        assert isinstance(decoder, AudioCodecContext)
        decoder.sample_rate = RATE
        decoder.layout = "stereo"
        self.decoder = decoder
        self.resampler = av.AudioResampler(
            format="fltp", layout="stereo", rate=RATE, frame_size=1024
        )
        encoder = av.CodecContext.create("aac", "w")
        assert isinstance(encoder, AudioCodecContext)
        encoder.sample_rate = RATE
        encoder.layout = "stereo"
        encoder.format = "fltp"
        encoder.bit_rate = BITRATE
        encoder.time_base = Fraction(1, RATE)
        encoder.open()
        self.encoder = encoder
        self.config: AudioConfig = parse_config(bytes(encoder.extradata or b""))
        self._anchor_ms: float | None = None
        self._samples_in = 0  # decoded (and filled) samples fed to the resampler
        self._samples_out = 0  # resampled samples given to the encoder
        self.bad_packets = 0
        self.filled_ms = 0.0
        self._format = "fltp"  # the decoder's; the resampler takes one format only

    def packet(self, ms: int, data: bytes) -> list[tuple[int, bytes]]:
        """One Opus packet at ``ms`` -> the (ms, raw AAC frame) pairs it completes."""
        if not data:  # an empty packet would put the decoder in draining mode for good
            return []
        if self._anchor_ms is None:
            self._anchor_ms = float(ms)
        try:
            frames = self.decoder.decode(av.Packet(data))
        except av.FFmpegError as exc:
            self.bad_packets += 1
            if self.bad_packets == 1:
                log.warning("whip: an Opus packet did not decode (%s); filling with silence", exc)
            return []
        out: list[tuple[int, bytes]] = []
        expected = self._anchor_ms + self._samples_in * 1000 / RATE
        gap = ms - expected
        if gap > MAX_FILL_MS:
            self._anchor_ms += gap  # a jump, not a fill
        elif gap > GAP_MS:
            out += self._feed(_silence(round(gap * RATE / 1000), self._format))
            self.filled_ms += gap
        for frame in frames:
            self._format = frame.format.name
            out += self._feed(frame)
        return out

    def _feed(self, frame: AudioFrame) -> list[tuple[int, bytes]]:
        self._samples_in += frame.samples
        frame.pts = None
        out: list[tuple[int, bytes]] = []
        for resampled in self.resampler.resample(frame):
            resampled.pts = self._samples_out
            self._samples_out += resampled.samples
            for packet in self.encoder.encode(resampled):
                if packet.pts is not None and packet.pts >= 0:  # not the encoder's priming
                    anchor = self._anchor_ms or 0.0
                    out.append((round(anchor + packet.pts * 1000 / RATE), bytes(packet)))
        return out


def _silence(samples: int, sample_format: str) -> AudioFrame:
    frame = AudioFrame(format=sample_format, layout="stereo", samples=samples)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = RATE
    return frame


Done = Callable[[list[tuple[int, bytes]]], None]


class AudioTranscoder:
    """`OpusToAac` on a thread of its own: packets in through a bounded queue, AAC frames out
    through ``deliver`` (called on the transcoder's thread: hand them to the loop yourself)."""

    def __init__(self, deliver: Done, name: str, maxsize: int = 200) -> None:
        self.codec = OpusToAac()
        self._deliver = deliver
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def config(self) -> AudioConfig:
        return self.codec.config

    def submit(self, ms: int, data: bytes) -> None:
        try:
            self._queue.put_nowait((ms, data))
        except queue.Full:
            self.dropped += 1  # the gap is filled with silence when the thread catches up

    def close(self) -> None:
        """Stop after what is queued; returns at once (the thread is a daemon)."""
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            # Make room for the end marker; what was dropped is silence, not a hang.
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                out = self.codec.packet(*item)
            except Exception:  # a bug here must not kill the thread silently
                log.exception("whip: audio transcode failed on a packet")
                continue
            if out:
                self._deliver(out)
