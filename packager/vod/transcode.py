"""The local VOD backend: one uploaded file -> a CMAF HLS ladder, a poster and a storyboard,
on the live ladder's code (`packager.ladder.codec`, `packager.hls`).

    caller's thread: demux -> decode (FFmpeg frame+slice threads) -> previews, decimate, scale
        in cascade -> bounded queue per rung ----> one thread per rung: libx264 (VOD mode:
        B-frames, full lookahead, frame threads) -> Segmenter -> CmafMuxer -> files
    AAC is encoded once, on the caller's thread, and its packets go down every rung's queue.

Decisions:

- Keyframes: IDRs are forced at the first source frame at or after each multiple of
  `segment_s` (x264 places none itself: `codec.X264_VOD_PARAMS`), and every rung gets that
  frame (the decimator keeps forced keyframes), so each rung's segmenter sees the same keyframe
  times and cuts at the same times. The segmenter's target is half the grid, so every forced
  IDR is a cut even when millisecond rounding puts two of them a hair under `segment_s` apart.
- Timeline: the first video frame is 0, shifted by `_lead_ms` (three frame periods of the
  slowest rung): with B-frames x264's first decode times lie two frames before the first
  presentation time, and fMP4 decode times cannot be negative.
- Audio is always re-encoded, once: AAC-LC, stereo, 128 kb/s, 48 kHz (44.1 kept). Passthrough
  would save ~1% of the CPU but take the upload's channel layout (5.1, mono), object type
  (HE-AAC), bit rate and framing (ADTS in TS/FLV) as they come; one known format is what every
  player, the BANDWIDTH arithmetic and the MediaConvert backend agree on.
- Scaling: FFmpeg's scale filter (swscale, bicubic; `_Scaler`) from the source picture for
  every rung, on the decode thread, before any of the frame's pictures is queued (an encoder
  thread must not read a frame while another scale reads it). Not in cascade, though the live
  ladder does and the issue suggested it: bench/vod_transcode.py measured cascade at the same
  CPU (+-1%) and -0.4 dB (480p) / -1.0 dB (360p) PSNR against the CLI's direct scales; direct
  is within 0.01 dB on every rung. `CASCADE` switches it back on.
- Threads: one per rung; x264's frame threads (its own count) do the rest. The queues are
  bounded, so a slow rung slows the decoder instead of memory growing.
- Cancellation: the `cancel` event is checked between packets; the rung threads are told to
  stop (no flush), joined, and `TranscodeCancelled` raised. Files already written stay for the
  caller to delete with `out_dir`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from media.aac import parse_config
from media.types import AudioConfig, MediaPacket
from packager.hls.cmaf import CmafMuxer
from packager.hls.playlists import (
    CMAF_VERSION,
    SegmentEntry,
    Variant,
    render_master,
    render_vod,
)
from packager.hls.rendition import RenditionStats
from packager.hls.segment import Part, Segment, TrackFormat
from packager.hls.segmenter import Segmenter
from packager.ladder.codec import TIME_BASE, VOD, Decimator, RungEncoder, rate_for, rung_size
from packager.types import Rung
from packager.vod.probe import ProbeResult
from packager.vod.storyboard import Poster, Storyboard

log = logging.getLogger(__name__)

MASTER_NAME = "master.m3u8"
PLAYLIST_NAME = "vod.m3u8"
INIT_NAME = "init.mp4"
AUDIO_BITRATE = 128_000
AUDIO_RATES = (44_100, 48_000)  # kept as they are; anything else becomes 48 kHz
QUEUE_ITEMS = 48  # per rung: ~16 frames and their audio
PROGRESS_EVERY_S = 1.0
SCALER = "bicubic"  # swscale's default, and the ffmpeg CLI's
#: Each rung scaled from the next larger one's picture, or (False) from the source: see the
#: module docstring for the measurement.
CASCADE = False
_END = object()


class TranscodeCancelled(Exception):
    """The job's cancel event was set; out_dir holds a partial output."""


@dataclass(frozen=True, slots=True)
class RenditionOut:
    name: str
    width: int
    height: int
    bandwidth: int  # peak segment bit rate (bits/s), as EXT-X-STREAM-INF BANDWIDTH
    average_bandwidth: int
    codecs: str  # RFC 6381, e.g. "avc1.64001f,mp4a.40.2"
    playlist: str  # relative to out_dir, e.g. "720p/vod.m3u8"


@dataclass(frozen=True, slots=True)
class TranscodeResult:
    master: str  # "master.m3u8" (relative to out_dir)
    renditions: list[RenditionOut]
    poster: str | None  # "poster.jpg"
    storyboard_vtt: str | None  # "storyboard.vtt" (cues point at "storyboard.jpg#xywh=...")
    duration_s: float
    files: list[str]  # every file written, relative to out_dir (posix)


def vod_ladder(rungs: Sequence[Rung], source_w: int, source_h: int) -> list[Rung]:
    """The rungs a source of this size gets, largest first, with their real picture size.

    A rung runs when its height is at most the source's short side (the source's own size is
    kept: a 720p upload gets a 720p rendition); a source smaller than every rung gets one
    rendition at its own size, with the smallest rung's frame rate and a bit rate scaled by
    area. Rungs of equal height after that are kept once.
    """
    if not rungs:
        raise ValueError("an empty ladder")
    short = min(source_w, source_h)
    out: list[Rung] = []
    for rung in sorted(rungs, key=lambda r: r.height, reverse=True):
        if rung.height > short or any(r.height == rung.height for r in out):
            continue
        width, height = rung_size(rung, source_w, source_h)
        out.append(dataclasses.replace(rung, width=width, height=height))
    if not out:
        smallest = min(rungs, key=lambda r: r.height)
        width, height = max(2, source_w // 2 * 2), max(2, source_h // 2 * 2)
        sw, sh = rung_size(smallest, source_w, source_h)
        bitrate = max(100_000, smallest.video_bitrate * width * height // (sw * sh))
        out.append(Rung(f"{short // 2 * 2}p", width, height, smallest.fps, bitrate))
    return out


class _Scaler:
    """A picture at one rung's size, 4:2:0, through FFmpeg's scale filter (swscale, bicubic).

    A filter graph rather than `VideoReformatter`: the same swscale, the same CPU (~2.2 ms a
    1080p -> 720p frame), but the filter passes the source's chroma siting (H.264's "left")
    to swscale, which PyAV's reformatter leaves at its default (centre): its chroma came out
    shifted, -2.5 dB chroma PSNR at 720p against the ffmpeg CLI's scale, worse in cascade.
    """

    def __init__(self, width: int, height: int) -> None:
        self.size = (width, height)
        self._input: tuple[int, int, str] | None = None
        self._graph: av.filter.Graph | None = None

    def scale(self, frame: VideoFrame) -> VideoFrame:
        key = (frame.width, frame.height, frame.format.name)
        if key == (*self.size, "yuv420p"):
            return frame
        if key != self._input or self._graph is None:
            self._graph = self._build(frame)
            self._input = key
        self._graph.push(frame)
        out = self._graph.pull()
        assert isinstance(out, VideoFrame)  # a video graph
        return out

    def _build(self, frame: VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        source = graph.add_buffer(
            width=frame.width,
            height=frame.height,
            format=frame.format,
            time_base=frame.time_base or TIME_BASE,
        )
        width, height = self.size
        scale = graph.add("scale", f"{width}:{height}:flags={SCALER}")
        pixels = graph.add("format", "yuv420p")
        sink = graph.add("buffersink")
        source.link_to(scale)
        scale.link_to(pixels)
        pixels.link_to(sink)
        graph.configure()
        return graph


@dataclass(eq=False)
class _RungJob:
    """One rung: fed by the decode thread (`take`/`scale`/`put`), run by its own thread."""

    spec: Rung
    rate: Fraction
    directory: Path
    name_prefix: str
    encoder: RungEncoder
    segmenter: Segmenter
    abort: threading.Event
    created: datetime
    decimator: Decimator = field(init=False)
    scaler: _Scaler = field(init=False)
    queue: queue.Queue[object] = field(default_factory=lambda: queue.Queue(QUEUE_ITEMS))
    muxer: CmafMuxer = field(default_factory=CmafMuxer)
    stats: RenditionStats = field(default_factory=RenditionStats)
    entries: list[SegmentEntry] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    fmt: TrackFormat | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.decimator = Decimator(self.rate)
        self.scaler = _Scaler(self.spec.width, self.spec.height)

    # --- decode thread ---

    def scale(self, frame: VideoFrame) -> VideoFrame:
        return self.scaler.scale(frame)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"vod-{self.spec.name}")
        self.thread.start()

    # --- rung thread ---

    def run(self) -> None:
        try:
            while (item := self.queue.get()) is not _END:
                if self.abort.is_set():
                    continue  # cancelled: drain to the end marker, encode nothing more
                if isinstance(item, MediaPacket):
                    self._write(self.segmenter.push(item))
                else:
                    assert isinstance(item, tuple)  # (picture, keyframe), from the decoder
                    frame, keyframe = item
                    for packet in self.encoder.encode(frame, keyframe):
                        self._write(self.segmenter.push(packet))
            if self.abort.is_set():
                return
            for packet in self.encoder.flush():
                self._write(self.segmenter.push(packet))
            self._write(self.segmenter.flush())
        except BaseException as exc:  # reported by the decode thread, which then stops all
            self.error = exc
            self.abort.set()
            while self.queue.get() is not _END:
                pass

    def _write(self, out: list[Segment | Part]) -> None:
        for segment in out:
            if isinstance(segment, Part):  # never: VOD segments are not cut into parts
                continue
            if segment.fmt != self.fmt:
                if self.fmt is not None:  # never: the configs are set before any packet
                    raise RuntimeError(f"{self.spec.name}: the track format changed")
                self.fmt = segment.fmt
                self._store(INIT_NAME, self.muxer.init_segment(segment.fmt))
            data = self.muxer.media_segment(segment)
            uri = f"seg_{segment.sequence}{self.muxer.extension}"
            self._store(uri, data)
            self.stats.add(segment, len(data))
            self.entries.append(
                SegmentEntry(
                    sequence=segment.sequence,
                    uri=uri,
                    duration=segment.duration_ms / 1000,
                    discontinuity=False,
                    program_date_time=self.created + timedelta(milliseconds=segment.start_ms),
                    init_uri=INIT_NAME,
                    size=len(data),
                )
            )

    def _store(self, name: str, data: bytes) -> None:
        (self.directory / name).write_bytes(data)
        self.files.append(f"{self.name_prefix}/{name}")

    # --- after the thread ---

    def rendition(self) -> tuple[RenditionOut, Variant]:
        assert self.fmt is not None and self.fmt.video is not None  # checked by the caller
        uri = f"{self.spec.name}/{PLAYLIST_NAME}"
        variant = Variant(
            uri=uri,
            bandwidth=max(self.stats.peak_bps, 1),
            average_bandwidth=self.stats.average_bps or None,
            codecs=self.fmt.codecs,
            resolution=(self.spec.width, self.spec.height),
            frame_rate=float(self.rate),
        )
        out = RenditionOut(
            name=self.spec.name,
            width=self.spec.width,
            height=self.spec.height,
            bandwidth=variant.bandwidth,
            average_bandwidth=self.stats.average_bps,
            codecs=variant.codecs,
            playlist=uri,
        )
        return out, variant


class _AudioEncoder:
    """The source's audio as AAC-LC packets on the source's clock (ms), encoded once."""

    def __init__(self, stream: AudioStream) -> None:
        rate = stream.sample_rate if stream.sample_rate in AUDIO_RATES else 48_000
        self.rate = rate
        self.resampler = av.AudioResampler(
            format="fltp", layout="stereo", rate=rate, frame_size=1024
        )
        encoder = av.CodecContext.create("aac", "w")
        assert isinstance(encoder, AudioCodecContext)  # create() with "w" on an audio codec
        encoder.sample_rate = rate
        encoder.layout = "stereo"
        encoder.format = "fltp"
        encoder.bit_rate = AUDIO_BITRATE
        encoder.time_base = Fraction(1, rate)
        encoder.open()
        self.encoder = encoder
        self.config: AudioConfig = parse_config(bytes(encoder.extradata or b""))
        self._anchor_ms: float | None = None  # source time of the first sample
        self._samples = 0

    def encode(self, frame: AudioFrame | None) -> list[tuple[float, bytes]]:
        """(source time in ms, raw AAC frame) for what `frame` completes; None flushes."""
        if frame is not None and self._anchor_ms is None:
            self._anchor_ms = float(frame.time or 0.0) * 1000
        out: list[tuple[float, bytes]] = []
        for resampled in self.resampler.resample(frame):
            # Sample-counted timestamps: the muxer lays AAC frames end to end anyway.
            resampled.pts = self._samples
            self._samples += resampled.samples
            out += self._packets(resampled)
        if frame is None:
            out += self._packets(None)
        return out

    def _packets(self, frame: AudioFrame | None) -> list[tuple[float, bytes]]:
        anchor = self._anchor_ms or 0.0
        return [
            (anchor + (p.pts or 0) * 1000 / self.rate, bytes(p)) for p in self.encoder.encode(frame)
        ]


def _lead_ms(rates: Sequence[Fraction]) -> int:
    return math.ceil(3 * 1000 / min(rates))


def transcode(
    source: Path,
    out_dir: Path,
    probe: ProbeResult,
    rungs: Sequence[Rung],
    *,
    preset: str = "medium",
    segment_s: float = 6.0,
    progress: Callable[[float, str], None] = lambda f, stage: None,
    cancel: threading.Event | None = None,
) -> TranscodeResult:
    """Transcode `source` (already probed) into `out_dir`; see the module docstring."""
    ladder = vod_ladder(rungs, probe.width, probe.height)
    out_dir.mkdir(parents=True, exist_ok=True)
    cancel = cancel or threading.Event()
    with av.open(
        str(source),
        format=probe.container.split(",")[0],
        # The file and nothing else: no demuxer may open another file or URL.
        options={"protocol_whitelist": "file"},
    ) as container:
        video = container.streams.best("video")
        if not isinstance(video, VideoStream):
            raise ValueError(f"{source.name}: no video stream")
        audio = container.streams.best("audio")
        video.thread_type = "AUTO"  # frame + slice threads, FFmpeg's count (as the CLI)
        video.thread_count = 0
        run = _Run(
            ladder, out_dir, probe, video, audio if isinstance(audio, AudioStream) else None,
            preset, segment_s, progress, cancel,
        )  # fmt: skip
        try:
            run.decode(container)
        except BaseException:
            run.stop(abort=True)
            raise
        run.stop(abort=False)
    return run.finish()


class _Run:
    """One transcode's state on the decode thread."""

    def __init__(
        self,
        ladder: list[Rung],
        out_dir: Path,
        probe: ProbeResult,
        video: VideoStream,
        audio: AudioStream | None,
        preset: str,
        segment_s: float,
        progress: Callable[[float, str], None],
        cancel: threading.Event,
    ) -> None:
        self.out_dir = out_dir
        self.probe = probe
        self.video = video
        self.audio = audio
        self.progress = progress
        self.cancel = cancel
        self.segment_ms = round(segment_s * 1000)
        self.segment_s = segment_s
        source_rate = probe.fps or video.average_rate
        rates = [rate_for(r, Fraction(source_rate) if source_rate else None) for r in ladder]
        self.lead_ms = _lead_ms(rates)
        self.audio_encoder = _AudioEncoder(audio) if audio is not None else None
        self.abort = threading.Event()
        created = datetime.now(UTC).replace(microsecond=0)
        self.jobs: list[_RungJob] = []
        for rung, rate in zip(ladder, rates, strict=True):
            directory = out_dir / rung.name
            directory.mkdir(exist_ok=True)
            encoder = RungEncoder(rung, rung.width, rung.height, rate, preset, mode=VOD)
            segmenter = Segmenter(self.segment_ms // 2)
            segmenter.set_video_config(encoder.config)
            if self.audio_encoder is not None:
                segmenter.set_audio_config(self.audio_encoder.config)
            self.jobs.append(
                _RungJob(rung, rate, directory, rung.name, encoder, segmenter, self.abort, created)
            )
        self.poster = Poster(probe.duration_s)
        self.storyboard = Storyboard(probe.duration_s)
        self.origin_ms: float | None = None  # source time of the first video frame
        self.last_ms = -math.inf  # relative to the origin
        self.next_cut_ms = 0.0
        self.pending_audio: list[tuple[float, bytes]] = []
        self.bad_packets = 0
        self.dropped_frames = 0
        self.done = 0.0
        self._reported_at = time.monotonic()
        for job in self.jobs:
            job.start()

    # --- the decode loop ---

    def decode(self, container: InputContainer) -> None:
        streams = [s for s in (self.video, self.audio) if s is not None]
        for packet in container.demux(*streams):
            if self.cancel.is_set():
                raise TranscodeCancelled
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                self.bad_packets += 1
                if self.bad_packets == 1:  # the rest are counted, and summed up at the end
                    log.warning("%s: skipping a bad packet: %s", packet.stream.type, exc)
                continue
            for frame in frames:
                if isinstance(frame, VideoFrame):
                    self._video(frame)
                elif isinstance(frame, AudioFrame) and self.audio_encoder is not None:
                    self._audio(self.audio_encoder.encode(frame))
            self._check()
        if self.audio_encoder is not None:
            self._audio(self.audio_encoder.encode(None))
        if self.bad_packets:
            log.warning("%d bad packets skipped in all", self.bad_packets)
        self._report(min(self.done, 1.0), "finishing", force=True)

    def _video(self, frame: VideoFrame) -> None:
        if frame.pts is None or frame.time_base is None:
            self.dropped_frames += 1
            return
        t_ms = float(frame.pts * frame.time_base) * 1000
        if self.origin_ms is None:
            self.origin_ms = t_ms
            self._audio([])
        rel = t_ms - self.origin_ms
        if rel <= self.last_ms:
            self.dropped_frames += 1  # timestamps must increase (one decimation grid)
            return
        self.last_ms = rel
        keyframe = rel >= self.next_cut_ms
        if keyframe:
            self.next_cut_ms = (math.floor(rel / self.segment_ms) + 1) * self.segment_ms
        self.poster.push(frame, rel / 1000)
        self.storyboard.push(frame, rel / 1000)
        pts = round(rel) + self.lead_ms
        # Every picture of this frame is made before any is queued (see the docstring).
        pictures: list[tuple[_RungJob, VideoFrame]] = []
        base = frame
        for job in self.jobs:
            if not job.decimator.keep(pts, keyframe):
                continue
            picture = job.scale(base)
            if CASCADE:
                base = picture
            pictures.append((job, picture))
        for job, picture in pictures:
            picture.pts, picture.time_base = pts, TIME_BASE
            job.queue.put((picture, keyframe))
        self.done = rel / 1000 / max(self.probe.duration_s, 0.001)
        self._report(min(self.done, 0.99), "transcoding")

    def _audio(self, packets: list[tuple[float, bytes]]) -> None:
        self.pending_audio += packets
        if self.origin_ms is None:
            del self.pending_audio[:-10_000]  # before any video: bounded
            return
        for source_ms, data in self.pending_audio:
            pts = round(source_ms - self.origin_ms) + self.lead_ms
            if pts < 0:
                continue  # before the video's start
            packet = MediaPacket(kind="audio", dts_ms=pts, pts_ms=pts, keyframe=True, data=data)
            for job in self.jobs:
                job.queue.put(packet)
        self.pending_audio.clear()

    def _check(self) -> None:
        for job in self.jobs:
            if job.error is not None:
                raise RuntimeError(f"rung {job.spec.name} failed: {job.error}") from job.error

    def _report(self, fraction: float, stage: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._reported_at >= PROGRESS_EVERY_S:
            self._reported_at = now
            self.progress(fraction, stage)

    # --- the end ---

    def stop(self, *, abort: bool) -> None:
        """End every rung thread: flushed, or at once (an error, a cancel)."""
        if abort:
            self.abort.set()
        for job in self.jobs:
            job.queue.put(_END)
        for job in self.jobs:
            if job.thread is not None:
                job.thread.join()

    def finish(self) -> TranscodeResult:
        self._check()  # a rung that failed while flushing
        files: list[str] = []
        renditions: list[RenditionOut] = []
        variants: list[Variant] = []
        minimum_target = math.ceil(self.segment_s)
        for job in self.jobs:
            if job.fmt is None or not job.entries:
                raise RuntimeError(f"rung {job.spec.name}: no video was encoded")
            text = render_vod(job.entries, version=CMAF_VERSION, minimum_target=minimum_target)
            (job.directory / PLAYLIST_NAME).write_text(text, encoding="utf-8")
            files += [*job.files, f"{job.spec.name}/{PLAYLIST_NAME}"]
            out, variant = job.rendition()
            renditions.append(out)
            variants.append(variant)
        (self.out_dir / MASTER_NAME).write_text(
            render_master(variants, version=CMAF_VERSION), encoding="utf-8"
        )
        files.append(MASTER_NAME)
        duration_s = sum(e.duration for e in self.jobs[0].entries)
        poster = self.poster.write(self.out_dir)
        board = self.storyboard.write(self.out_dir, duration_s)
        files += ([poster] if poster else []) + board
        self.progress(1.0, "finishing")
        return TranscodeResult(
            master=MASTER_NAME,
            renditions=renditions,
            poster=poster,
            storyboard_vtt=board[-1] if board else None,
            duration_s=duration_s,
            files=files,
        )
