"""The stream-health meter (sans-IO): time is passed in, so nothing here sleeps."""

from __future__ import annotations

import json

import pytest

from packager.health import HealthMeter
from tests.packager.hls_helpers import synthetic


def feed(meter: HealthMeter, seconds: float, **options: object) -> None:
    """Packets as a publisher sends them (tests.packager.hls_helpers.synthetic)."""
    for packet in synthetic(seconds, **options):  # type: ignore[arg-type]
        if packet.kind == "video":
            meter.video(packet.dts_ms, packet.keyframe, len(packet.data))
        else:
            meter.audio(len(packet.data))


def test_a_steady_stream() -> None:
    meter = HealthMeter(100.0)
    meter.video_config("h264", 1280, 720)
    # 30 fps video of 50 B frames, keyframes every 2 s, AAC frames of 20 B at 48 kHz.
    feed(meter, 10, fps=30, gop_ms=2000)
    sample = meter.sample(110.0)
    assert sample["video_kbps"] == pytest.approx(300 * 50 * 8 / 1000 / 10, abs=0.1)
    audio_frames = len(range(0, 10_000 * 48, 1024))  # frames of 1024 samples in 10 s
    assert sample["audio_kbps"] == pytest.approx(audio_frames * 20 * 8 / 1000 / 10, abs=0.1)
    assert sample["bitrate_kbps"] == pytest.approx(
        sample["video_kbps"] + sample["audio_kbps"], abs=0.1
    )
    assert sample["fps"] == pytest.approx(30, abs=0.05)
    assert sample["keyframe_interval_s"] == 2.0
    assert sample["audio"] is True
    assert (sample["video_codec"], sample["width"], sample["height"]) == ("h264", 1280, 720)
    assert sample["rungs"] == sample["rungs_shed"] == []
    json.dumps(sample, allow_nan=False)  # JSON-able as it is


def test_each_sample_covers_the_interval_since_the_last() -> None:
    meter = HealthMeter(0.0)
    feed(meter, 4, fps=25, gop_ms=1000)
    first = meter.sample(4.0)
    assert first["fps"] == pytest.approx(25, abs=0.1)
    # The next 4 s at 30 fps; the frame rate is measured from the last frame of the previous
    # interval on, so every frame of this one counts as one frame interval.
    feed(meter, 4, fps=30, gop_ms=3000, start_ms=4000)
    second = meter.sample(8.0)
    assert second["fps"] == pytest.approx(30, abs=0.3)
    assert second["keyframe_interval_s"] == 3.0
    # Nothing came in: no bitrate, no frames, no audio; the codec and last interval remain.
    third = meter.sample(13.0)
    assert third["bitrate_kbps"] == third["video_kbps"] == third["audio_kbps"] == 0
    assert third["fps"] == 0
    assert third["audio"] is False
    assert third["keyframe_interval_s"] == 3.0


def test_bitrate_is_over_the_wall_interval() -> None:
    meter = HealthMeter(0.0)
    meter.video(0, True, 125_000)  # 1 Mbit
    meter.audio(125_000)
    sample = meter.sample(2.0)
    assert sample["video_kbps"] == sample["audio_kbps"] == 500
    assert sample["bitrate_kbps"] == 1000
    # A sample at the same instant (no time passed) divides by nothing.
    meter.video(33, False, 10)
    assert meter.sample(2.0)["bitrate_kbps"] == 0


def test_frame_rate_is_in_media_time_not_wall_time() -> None:
    # A publisher catching up after a stall sends 5 s of 30 fps video within one second.
    meter = HealthMeter(0.0)
    feed(meter, 5, fps=30, audio=False)
    sample = meter.sample(1.0)
    assert sample["fps"] == pytest.approx(30, abs=0.1)
    assert sample["audio"] is False


def test_frame_rate_unknown_with_a_single_frame() -> None:
    meter = HealthMeter(0.0)
    assert meter.sample(1.0)["fps"] == 0  # no video yet
    meter.video(0, True, 100)
    assert meter.sample(2.0)["fps"] is None  # one frame: no rate yet
    meter.video(40, False, 100)
    assert meter.sample(3.0)["fps"] == 25  # one frame interval of 40 ms
    # Frames without progress in decode time (broken timestamps): no rate, not a crash.
    meter.video(40, False, 100)
    assert meter.sample(4.0)["fps"] is None


def test_keyframe_interval_needs_two_keyframes() -> None:
    meter = HealthMeter(0.0)
    meter.video(0, True, 1)
    meter.video(1000, False, 1)
    assert meter.sample(1.0)["keyframe_interval_s"] is None
    meter.video(4500, True, 1)
    assert meter.sample(2.0)["keyframe_interval_s"] == 4.5
    meter.video(6500, True, 1)
    assert meter.sample(3.0)["keyframe_interval_s"] == 2.0  # the last distance, not an average


def test_a_gap_starts_the_measures_afresh() -> None:
    meter = HealthMeter(0.0)
    meter.video(0, True, 1)
    meter.video(2000, True, 1)
    meter.gap()  # packets lost (or a new session, whose timestamps start again)
    meter.video(100, True, 1)  # a keyframe 98 s of "media time" earlier: not an interval
    meter.video(133, False, 1)
    sample = meter.sample(1.0)
    assert sample["keyframe_interval_s"] == 2.0  # the last one measured before the gap
    # Two frame intervals: 2000 ms before the gap and 33 ms after; none across it.
    assert sample["fps"] == pytest.approx(2 * 1000 / 2033, abs=0.01)
    meter.video(1100, True, 1)
    assert meter.sample(2.0)["keyframe_interval_s"] == 1.0


def test_a_gap_keeps_what_the_interval_measured_before_it() -> None:
    # The publisher leaves mid-interval (the session ends) and comes back: the frame rate is
    # that of both stretches, not lost with the first.
    meter = HealthMeter(0.0)
    feed(meter, 2, fps=25, audio=False)
    meter.gap()
    assert meter.sample(2.0)["fps"] == pytest.approx(25, abs=0.1)
    feed(meter, 1, fps=25, audio=False)
    meter.gap()
    feed(meter, 1, fps=25, audio=False)
    assert meter.sample(4.0)["fps"] == pytest.approx(25, abs=0.1)
    meter.gap()
    assert meter.sample(5.0)["fps"] == 0  # nothing since


def test_rungs_active_and_shed() -> None:
    meter = HealthMeter(0.0, ["720p", "480p", "360p"])
    meter.video_config("h264", 1920, 1080)
    for name in ("360p", "720p", "480p"):
        meter.rung_output(name)
    sample = meter.sample(1.0)
    assert sample["rungs"] == ["720p", "480p", "360p"]  # in the ladder's order
    assert sample["rungs_shed"] == []
    meter.rung_shed("720p")
    sample = meter.sample(2.0)
    assert (sample["rungs"], sample["rungs_shed"]) == (["480p", "360p"], ["720p"])
    # Still shed until it emits again.
    assert meter.sample(3.0)["rungs_shed"] == ["720p"]
    meter.rung_output("720p")
    sample = meter.sample(4.0)
    assert (sample["rungs"], sample["rungs_shed"]) == (["720p", "480p", "360p"], [])
    # A rung outside the configured ladder comes last; one shed before any output is listed.
    meter.rung_output("extra")
    meter.rung_shed("240p")
    sample = meter.sample(5.0)
    assert sample["rungs"] == ["720p", "480p", "360p", "extra"]
    assert sample["rungs_shed"] == ["240p"]


def test_a_new_video_config_starts_a_new_ladder() -> None:
    meter = HealthMeter(0.0, ["720p", "360p"])
    meter.video_config("h264", 1920, 1080)
    meter.rung_output("720p")
    meter.rung_shed("360p")
    meter.video_config("hevc", 640, 360)  # a smaller source: the 720p rung is skipped
    meter.rung_output("360p")
    sample = meter.sample(1.0)
    assert (sample["video_codec"], sample["width"], sample["height"]) == ("hevc", 640, 360)
    assert (sample["rungs"], sample["rungs_shed"]) == (["360p"], [])


def test_unknown_size_and_no_config() -> None:
    meter = HealthMeter(0.0)
    sample = meter.sample(1.0)
    assert (sample["video_codec"], sample["width"], sample["height"]) == (None, None, None)
    meter.video_config("vp9", 0, 0)  # VP9 configs carry no size
    assert meter.sample(2.0)["width"] is None


def test_an_audio_only_stream() -> None:
    meter = HealthMeter(0.0)
    feed(meter, 3, video=False)
    sample = meter.sample(3.0)
    assert sample["audio"] is True
    assert sample["video_kbps"] == 0 and sample["audio_kbps"] > 0
    assert sample["fps"] == 0 and sample["keyframe_interval_s"] is None


def test_the_sample_fits_a_notification() -> None:
    meter = HealthMeter(0.0, [f"rung{i}" for i in range(10)])
    meter.video_config("h264", 3840, 2160)
    for i in range(10):
        meter.rung_output(f"rung{i}")
    feed(meter, 2)
    assert len(json.dumps(meter.sample(2.0))) < 1000
