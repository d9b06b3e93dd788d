"""One audio codec to another with PyAV, on the input's timeline: Opus -> AAC for WHIP
publishers (HLS players take AAC), AAC -> Opus for WHEP viewers (WebRTC takes Opus).

Synchronous: `AudioTranscoder` runs one on a thread of its own, off the event loop.

Timing: encoded frames are laid end to end by whoever plays them, so the output is
sample-counted from the first packet's time. A gap in the input (lost packets, a sender's
discontinuous transmission) would then shift every later sound earlier; it is filled with
silence instead, so audio stays on the video's timeline. A packet the decoder refuses is
skipped and its time filled the same way; a gap too long to be loss (the publisher was gone)
moves the timeline instead.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame

log = logging.getLogger(__name__)

#: A gap shorter than this is jitter, not lost audio.
GAP_MS = 30
#: A longer gap is not filled (the publisher was gone, not lossy): the timeline jumps instead.
MAX_FILL_MS = 5_000


class AudioTranscode:
    """``decoder`` (opened by the caller, with its extradata) -> ``encoder_name`` at ``rate``,
    stereo, ``frame_size`` samples per frame."""

    def __init__(
        self, decoder: AudioCodecContext, encoder_name: str, rate: int, bit_rate: int,
        frame_size: int,
    ) -> None:  # fmt: skip
        self.decoder = decoder
        self.rate = rate
        self.resampler = av.AudioResampler(
            format="fltp" if encoder_name == "aac" else "s16",
            layout="stereo", rate=rate, frame_size=frame_size,
        )  # fmt: skip
        encoder = av.CodecContext.create(encoder_name, "w")
        assert isinstance(encoder, AudioCodecContext)
        encoder.sample_rate = rate
        encoder.layout = "stereo"
        encoder.format = "fltp" if encoder_name == "aac" else "s16"
        encoder.bit_rate = bit_rate
        encoder.time_base = Fraction(1, rate)
        encoder.open()
        self.encoder = encoder
        self._anchor_ms: float | None = None
        self._samples_in = 0  # decoded (and filled) samples, at the decoder's rate
        self._samples_out = 0  # resampled samples given to the encoder
        self._in_rate = decoder.sample_rate or rate
        self.bad_packets = 0
        self.filled_ms = 0.0
        self._format = decoder.format.name if decoder.format else "fltp"
        self._layout = "stereo"

    def packet(self, ms: int, data: bytes) -> list[tuple[int, bytes]]:
        """One input packet at ``ms`` -> the (ms, encoded frame) pairs it completes."""
        if not data:  # an empty packet would put the decoder in draining mode for good
            return []
        if self._anchor_ms is None:
            self._anchor_ms = float(ms)
        try:
            frames = self.decoder.decode(av.Packet(data))
        except av.FFmpegError as exc:
            self.bad_packets += 1
            if self.bad_packets == 1:
                log.warning("audio: a packet did not decode (%s); filling with silence", exc)
            return []
        out: list[tuple[int, bytes]] = []
        expected = self._anchor_ms + self._samples_in * 1000 / self._in_rate
        gap = ms - expected
        if gap > MAX_FILL_MS or gap < -MAX_FILL_MS:
            self._anchor_ms += gap  # a jump, not a fill
        elif gap > GAP_MS:
            out += self._feed(self._silence(round(gap * self._in_rate / 1000)))
            self.filled_ms += gap
        for frame in frames:
            self._format, self._layout = frame.format.name, frame.layout.name
            self._in_rate = frame.sample_rate or self._in_rate
            out += self._feed(frame)
        return out

    def _feed(self, frame: AudioFrame) -> list[tuple[int, bytes]]:
        self._samples_in += frame.samples
        frame.pts = None
        out: list[tuple[int, bytes]] = []
        anchor = self._anchor_ms or 0.0
        for resampled in self.resampler.resample(frame):
            resampled.pts = self._samples_out
            self._samples_out += resampled.samples
            for packet in self.encoder.encode(resampled):
                if packet.pts is not None and packet.pts >= 0:  # not the encoder's priming
                    out.append((round(anchor + packet.pts * 1000 / self.rate), bytes(packet)))
        return out

    def _silence(self, samples: int) -> AudioFrame:
        frame = AudioFrame(format=self._format, layout=self._layout, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = self._in_rate
        return frame


class Codec(Protocol):
    def packet(self, ms: int, data: bytes) -> list[tuple[int, bytes]]: ...


Done = Callable[[list[tuple[int, bytes]]], None]


class AudioTranscoder:
    """A `Codec` on a thread of its own: packets in through a bounded queue, encoded frames
    out through ``deliver`` (called on the transcoder's thread: hand them to the loop
    yourself)."""

    def __init__(self, codec: Codec, deliver: Done, name: str, maxsize: int = 200) -> None:
        self.codec = codec
        self._deliver = deliver
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

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
                log.exception("audio: transcode failed on a packet")
                continue
            if out:
                self._deliver(out)
