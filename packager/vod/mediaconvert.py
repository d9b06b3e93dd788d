"""The ``mediaconvert`` VOD backend: the local ladder expressed as an AWS Elemental MediaConvert
job, for sites whose own machines cannot keep up.

`job_settings` builds the job's ``Settings`` document; `submit`, `poll` and `cancel` wrap the
three API calls the job runner needs. Nothing here waits or sleeps: the caller polls on its own
schedule (off the event loop: boto3 blocks).

What the job writes, under ``output_uri_prefix`` (an ``s3://bucket/key/prefix``):

- ``master.m3u8``: the HLS multivariant playlist (CMAF, fMP4), with per rung
  ``master_{rung}.m3u8`` and its ``master_{rung}*.cmfv`` media; the audio is one separate
  rendition, ``master_audio.m3u8`` / ``*.cmfa`` (a CMAF output holds one track, so unlike the
  local backend's muxed segments the audio is an ``EXT-X-MEDIA`` group every rung refers to);
- ``frames/frame_poster.NNNNNNN.jpg``: frame 0 and the one ``poster_at_s`` seconds in (shorter
  videos have only frame 0): the poster is the last of them;
- ``frames/frame_thumb.NNNNNNN.jpg``: one small frame every ``thumbnail_interval_s`` seconds, the
  tiles of the storyboard sprite that the job runner assembles (with its WebVTT track).

Rungs are chosen by the contract's ``vod_ladder`` rule, reimplemented here as `vod_rungs` (a
copy, so this module does not depend on the local encoder's), and sized with the live ladder's
`rung_size`. Rate control mirrors the local encoder's VBV: peak 1.5x and buffer 2x the rung's
bit rate, with QVBR (the default) or VBR at the rung's rate as the average.

Endpoints: MediaConvert's regional endpoint (botocore's default) takes every call; the
account-specific endpoints of ``DescribeEndpoints`` are no longer required, but `make_client`
can still discover one (older accounts, or a proxy), or take ``endpoint_url`` as given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, Literal, NamedTuple, Protocol, cast

import boto3
import botocore.exceptions
from botocore.config import Config

from packager.ladder.codec import rung_size
from packager.types import Rung

AUDIO_BITRATE = 128_000
AUDIO_SAMPLE_RATE = 48_000
AUDIO_SELECTOR = "Audio Selector 1"
AUDIO_GROUP = "audio"
MAX_RATE_FACTOR = Fraction(3, 2)  # peak bit rate over the rung's, as the local maxrate
BUFFER_FACTOR = 2  # HRD buffer over the rung's bit rate, as the local bufsize
POSTER_SHORT_SIDE = 720
THUMB_SHORT_SIDE = 90  # 160x90 storyboard tiles for a 16:9 source
MIN_PICTURE_SIDE = 32  # MediaConvert's smallest Width/Height

RateControl = Literal["QVBR", "VBR"]
JobStatus = Literal["queued", "running", "complete", "failed", "cancelled"]

_STATUSES: dict[str, JobStatus] = {
    "SUBMITTED": "queued",
    "PROGRESSING": "running",
    "COMPLETE": "complete",
    "ERROR": "failed",
    "CANCELED": "cancelled",
}
TERMINAL: frozenset[JobStatus] = frozenset({"complete", "failed", "cancelled"})


class MediaConvertClient(Protocol):
    """The calls this module makes on a boto3 ``mediaconvert`` client."""

    def create_job(self, **kwargs: Any) -> dict[str, Any]: ...

    def get_job(self, **kwargs: Any) -> dict[str, Any]: ...

    def cancel_job(self, **kwargs: Any) -> dict[str, Any]: ...

    def describe_endpoints(self, **kwargs: Any) -> dict[str, Any]: ...


class JobPoll(NamedTuple):
    status: JobStatus
    percent: int  # 0-100
    error_message: str | None  # set for "failed" and "cancelled"


class MediaConvertError(Exception):
    """MediaConvert answered something this module cannot use (no job id, an unknown status)."""


# --- the ladder ---


def vod_rungs(rungs: Sequence[Rung], source_w: int, source_h: int) -> list[Rung]:
    """The contract's ``vod_ladder`` rule: rungs below the source's short side, plus one at
    (at most) the source's own size: the biggest rung that does not exceed it, or, when the
    source is smaller than every rung, the smallest rung brought down to the source's size
    (its bit rate scaled by the pixel count)."""
    short = min(source_w, source_h)
    kept = [r for r in rungs if 0 < r.height <= short]
    if kept or not rungs:
        return kept
    smallest = min(rungs, key=lambda r: r.height)
    height = max(2, short // 2 * 2)
    bitrate = max(1000, round(smallest.video_bitrate * (height / smallest.height) ** 2))
    return [Rung(f"{height}p", 0, height, smallest.fps, bitrate)]


def output_rate(cap: int, source_fps: Fraction | None) -> Fraction | None:
    """The rung's frame rate, by the live ladder's rule: the source's divided by the smallest
    whole step that brings it to the cap (60 -> 30, 59.94 -> 29.97). None when the source's
    rate is unknown or implausible: the job then keeps the source's (MediaConvert has no
    "divide to a cap", and forcing the cap would duplicate frames of a slower source)."""
    if source_fps is None or not 5 <= source_fps <= 240:
        return None
    step = max(1, math.ceil(source_fps / cap - Fraction(1, 100)))  # 30.01 counts as 30
    return (source_fps / step).limit_denominator(1001)


def _size(short_side: int, source_w: int, source_h: int) -> tuple[int, int]:
    side = max(MIN_PICTURE_SIDE, min(short_side, min(source_w, source_h)))
    return rung_size(Rung("", 0, side, 0, 0), source_w, source_h)


# --- the job ---


def job_settings(
    source_uri: str,
    output_uri_prefix: str,
    rungs: Sequence[Rung],
    source_w: int,
    source_h: int,
    *,
    segment_s: int = 6,
    source_fps: Fraction | None = None,
    has_audio: bool = True,
    rate_control: RateControl = "QVBR",
    qvbr_quality: int = 7,
    poster_at_s: int = 5,
    thumbnail_interval_s: int = 10,
) -> dict[str, Any]:
    """The ``Settings`` of a CreateJob request for the whole ladder.

    ``rungs`` is the configured ladder, unfiltered: `vod_rungs` picks those for this source.
    ``source_w``/``source_h`` are the picture as displayed (after any rotation, which the job
    applies from the file's metadata). ``source_uri`` is ``s3://`` or ``https://``.
    """
    if not source_uri.startswith(("s3://", "https://")):
        raise ValueError("the source must be an s3:// or https:// URI")
    if not output_uri_prefix.startswith("s3://"):
        raise ValueError("the outputs must go to an s3:// prefix")
    if segment_s < 1 or poster_at_s < 1 or thumbnail_interval_s < 1:
        raise ValueError("segment, poster and thumbnail times are whole positive seconds")
    prefix = output_uri_prefix.rstrip("/")
    chosen = vod_rungs(rungs, source_w, source_h)
    if not chosen:
        raise ValueError("no rung for this source: the ladder is empty")

    outputs = [
        _rung_output(r, source_w, source_h, segment_s, source_fps, rate_control, qvbr_quality)
        for r in chosen
    ]
    if has_audio:
        outputs.append(_audio_output())
        for output in outputs[:-1]:  # every rung refers to the audio rendition group
            output["ContainerSettings"]["CmfcSettings"] = {"AudioRenditionSets": AUDIO_GROUP}
    cmaf_group = {
        "Name": "HLS",
        "OutputGroupSettings": {
            "Type": "CMAF_GROUP_SETTINGS",
            "CmafGroupSettings": {
                "Destination": f"{prefix}/master",
                "SegmentControl": "SEGMENTED_FILES",
                "SegmentLength": segment_s,
                # Segments end on GOP boundaries: with one GOP per segment, every rendition
                # cuts at the same instants (as the local backend's aligned keyframes).
                "SegmentLengthControl": "GOP_MULTIPLE",
                "FragmentLength": segment_s,
                "WriteHlsManifest": "ENABLED",
                "WriteDashManifest": "DISABLED",
                "ManifestDurationFormat": "FLOATING_POINT",
                "StreamInfResolution": "INCLUDE",
                "CodecSpecification": "RFC_6381",
                "ClientCache": "ENABLED",
                "TargetDurationCompatibilityMode": "SPEC_COMPLIANT",
            },
        },
        "Outputs": outputs,
    }
    frames_group = {
        "Name": "Frames",
        "OutputGroupSettings": {
            "Type": "FILE_GROUP_SETTINGS",
            "FileGroupSettings": {"Destination": f"{prefix}/frames/frame"},
        },
        "Outputs": [
            _frame_output("_poster", _size(POSTER_SHORT_SIDE, source_w, source_h), poster_at_s, 2),
            _frame_output(
                "_thumb", _size(THUMB_SHORT_SIDE, source_w, source_h), thumbnail_interval_s,
                10_000_000,  # MediaConvert's maximum: one per interval, however long
            ),
        ],
    }  # fmt: skip
    source: dict[str, Any] = {
        "FileInput": source_uri,
        "TimecodeSource": "ZEROBASED",
        "VideoSelector": {"Rotate": "AUTO"},
    }
    if has_audio:
        source["AudioSelectors"] = {AUDIO_SELECTOR: {"DefaultSelection": "DEFAULT"}}
    return {
        "TimecodeConfig": {"Source": "ZEROBASED"},
        "Inputs": [source],
        "OutputGroups": [cmaf_group, frames_group],
    }


def _rung_output(
    rung: Rung,
    source_w: int,
    source_h: int,
    segment_s: int,
    source_fps: Fraction | None,
    rate_control: RateControl,
    qvbr_quality: int,
) -> dict[str, Any]:
    width, height = rung_size(rung, source_w, source_h)
    h264: dict[str, Any] = {
        "CodecProfile": "HIGH",
        "CodecLevel": "AUTO",
        "RateControlMode": rate_control,
        "MaxBitrate": int(rung.video_bitrate * MAX_RATE_FACTOR),
        "HrdBufferSize": rung.video_bitrate * BUFFER_FACTOR,
        # Closed GOPs of exactly one segment, and no scene-cut I-frames, which would restart
        # the cadence per rung (the local encoder runs with scenecut=0 for the same reason).
        "GopSize": float(segment_s),
        "GopSizeUnits": "SECONDS",
        "GopClosedCadence": 1,
        "MinIInterval": 0,
        "SceneChangeDetect": "DISABLED",
        # VOD has no latency budget: B-frames, and multi-pass at the best quality tuning.
        "NumberBFramesBetweenReferenceFrames": 2,
        "GopBReference": "ENABLED",
        "QualityTuningLevel": "MULTI_PASS_HQ",
        "AdaptiveQuantization": "AUTO",
        "EntropyEncoding": "CABAC",
        "InterlaceMode": "PROGRESSIVE",
        # Square pixels: the size already carries the source's aspect ratio.
        "ParControl": "SPECIFIED",
        "ParNumerator": 1,
        "ParDenominator": 1,
    }
    if rate_control == "QVBR":
        h264["QvbrSettings"] = {"QvbrQualityLevel": qvbr_quality}
    else:
        h264["Bitrate"] = rung.video_bitrate
    rate = output_rate(rung.fps, source_fps)
    if rate is None:
        h264["FramerateControl"] = "INITIALIZE_FROM_SOURCE"
    else:
        h264["FramerateControl"] = "SPECIFIED"
        h264["FramerateConversionAlgorithm"] = "DUPLICATE_DROP"  # whole steps: drops only
        h264["FramerateNumerator"] = rate.numerator
        h264["FramerateDenominator"] = rate.denominator
    return {
        "NameModifier": f"_{rung.name}",
        "ContainerSettings": {"Container": "CMFC"},
        "VideoDescription": {
            "Width": width,
            "Height": height,
            "ScalingBehavior": "DEFAULT",
            "AntiAlias": "ENABLED",
            "ColorMetadata": "INSERT",
            "CodecSettings": {"Codec": "H_264", "H264Settings": h264},
        },
    }


def _audio_output() -> dict[str, Any]:
    return {
        "NameModifier": "_audio",
        "ContainerSettings": {
            "Container": "CMFC",
            "CmfcSettings": {
                "AudioGroupId": AUDIO_GROUP,
                "AudioTrackType": "ALTERNATE_AUDIO_AUTO_SELECT_DEFAULT",
            },
        },
        "AudioDescriptions": [
            {
                "AudioSourceName": AUDIO_SELECTOR,
                "CodecSettings": {
                    "Codec": "AAC",
                    "AacSettings": {
                        "Bitrate": AUDIO_BITRATE,
                        "CodecProfile": "LC",
                        "CodingMode": "CODING_MODE_2_0",
                        "RateControlMode": "CBR",
                        "SampleRate": AUDIO_SAMPLE_RATE,
                        "Specification": "MPEG4",
                    },
                },
            }
        ],
    }


def _frame_output(
    name: str, size: tuple[int, int], every_s: int, max_captures: int
) -> dict[str, Any]:
    return {
        "NameModifier": name,
        "Extension": "jpg",
        "ContainerSettings": {"Container": "RAW"},
        "VideoDescription": {
            "Width": size[0],
            "Height": size[1],
            "ScalingBehavior": "DEFAULT",
            "AntiAlias": "ENABLED",
            "CodecSettings": {
                "Codec": "FRAME_CAPTURE",
                "FrameCaptureSettings": {
                    "FramerateNumerator": 1,
                    "FramerateDenominator": every_s,
                    "MaxCaptures": max_captures,
                    "Quality": 80,
                },
            },
        },
    }


# --- the API calls (blocking: run them in a worker thread) ---


def make_client(
    region: str | None = None,
    endpoint_url: str | None = None,
    *,
    discover_endpoint: bool = False,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
) -> MediaConvertClient:
    """A MediaConvert client with the standard AWS credential chain. ``endpoint_url`` wins;
    else ``discover_endpoint`` asks DescribeEndpoints once for the account's endpoint; else the
    regional endpoint. botocore retries throttling and 5xx itself ("standard" mode): the calls
    here are few and idempotent (CreateJob carries a client request token)."""
    config = Config(
        region_name=region,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": 5},
    )
    session = boto3.session.Session()
    client = cast(
        MediaConvertClient, session.client("mediaconvert", endpoint_url=endpoint_url, config=config)
    )
    if endpoint_url is None and discover_endpoint:
        endpoints = client.describe_endpoints(Mode="DEFAULT").get("Endpoints") or []
        if not endpoints or not endpoints[0].get("Url"):
            raise MediaConvertError("DescribeEndpoints returned no endpoint")
        client = cast(
            MediaConvertClient,
            session.client("mediaconvert", endpoint_url=endpoints[0]["Url"], config=config),
        )
    return client


def submit(
    client: MediaConvertClient,
    *,
    role_arn: str,
    queue_arn: str | None,
    settings: Mapping[str, Any],
    user_metadata: Mapping[str, str],
    client_request_token: str | None = None,
) -> str:
    """Create the job; its id. ``client_request_token`` (e.g. the run's token) makes a
    resubmission after a lost answer return the same job instead of starting a second one."""
    request: dict[str, Any] = {
        "Role": role_arn,
        "Settings": dict(settings),
        "UserMetadata": dict(user_metadata),
        # Progress (JobPercentComplete) refreshes at this interval.
        "StatusUpdateInterval": "SECONDS_10",
    }
    if queue_arn is not None:
        request["Queue"] = queue_arn
    if client_request_token is not None:
        request["ClientRequestToken"] = client_request_token
    job = client.create_job(**request).get("Job") or {}
    job_id = job.get("Id")
    if not isinstance(job_id, str) or not job_id:
        raise MediaConvertError("CreateJob answered without a job id")
    return job_id


def poll(client: MediaConvertClient, job_id: str) -> JobPoll:
    """The job's status, percent done and, once it failed or was cancelled, why."""
    job = client.get_job(Id=job_id).get("Job") or {}
    raw = job.get("Status")
    status = _STATUSES.get(raw) if isinstance(raw, str) else None
    if status is None:
        raise MediaConvertError(f"job {job_id}: unknown status {raw!r}")
    if status == "complete":
        return JobPoll(status, 100, None)
    percent = job.get("JobPercentComplete")
    percent = min(100, max(0, percent)) if isinstance(percent, int) else 0
    if status == "failed":
        message = job.get("ErrorMessage") or "MediaConvert could not transcode the video."
        code = job.get("ErrorCode")
        return JobPoll(
            status, percent, f"{message} (MediaConvert error {code})" if code else message
        )
    if status == "cancelled":
        return JobPoll(status, percent, "The MediaConvert job was cancelled.")
    return JobPoll(status, percent, None)


def cancel(client: MediaConvertClient, job_id: str) -> None:
    """Cancel the job. A job that already ended (complete, failed, cancelled) is not an error:
    MediaConvert refuses to cancel it, and there is nothing left to stop."""
    try:
        client.cancel_job(Id=job_id)
    except botocore.exceptions.ClientError:
        if poll(client, job_id).status not in TERMINAL:
            raise
