"""One run of the ``mediaconvert`` backend (``packager.vod.mediaconvert_job``) against the moto
S3 server over HTTP and a MediaConvert fake.

The fake: moto has no MediaConvert, so the API is botocore's ``Stubber`` on a real client with
responses written from the API reference (not captured from AWS): CreateJob answers a job id,
GetJob answers PROGRESSING then COMPLETE. What the job would write is put in the bucket by the
test, as MediaConvert lays it out (``master.m3u8``, ``master_{rung}.m3u8``, frame captures made
by the ffmpeg CLI); whether a real job names its files exactly so is not checked here.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import boto3
import imageio_ffmpeg
import pytest
from botocore.stub import ANY, Stubber

from packager.storage.s3 import S3Storage
from packager.types import Rung
from packager.vod.mediaconvert_job import MediaConvertOptions, RunLost, run_mediaconvert
from packager.vod.probe import ProbeResult, VodRejected
from tests.s3_fixtures import make_storage

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
ROLE = "arn:aws:iam::123456789012:role/MediaConvert"
JOB_ID = "1700000000000-abc123"
RUNGS = (Rung("720p", 1280, 720, 30, 3_000_000), Rung("360p", 640, 360, 30, 700_000))
INFO = ProbeResult(
    container="mov,mp4,m4a,3gp,3g2,mj2", duration_s=35.0, width=1280, height=720,
    fps=Fraction(30), video_codec="h264", audio_codec="aac", audio_channels=2,
    audio_sample_rate=48000, bit_rate=4_000_000,
)  # fmt: skip
MASTER = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,URI="master_audio.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=3500000,AVERAGE-BANDWIDTH=3100000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,AUDIO="audio"
master_720p.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=800000,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,AUDIO="audio"
master_360p.m3u8
"""


def job(status: str, **extra: Any) -> dict[str, Any]:
    return {"Job": {"Id": JOB_ID, "Role": ROLE, "Settings": {}, "Status": status, **extra}}


@pytest.fixture
def client(aws_env: None) -> Any:
    return boto3.session.Session().client("mediaconvert", region_name="us-east-1")


def put_outputs(s3: Any, bucket: str, root: str, tmp_path: Path) -> None:
    """What the job writes, as MediaConvert names it."""
    s3.put_object(Bucket=bucket, Key=f"{root}/master.m3u8", Body=MASTER.encode())
    for name in ("master_720p.m3u8", "master_360p.m3u8", "master_720p_00001.cmfv"):
        s3.put_object(Bucket=bucket, Key=f"{root}/{name}", Body=b"x")
    pattern = tmp_path / "thumb.%07d.jpg"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f",
                    "lavfi", "-i", "testsrc2=size=160x90:rate=1", "-frames:v", "4",
                    "-start_number", "0", str(pattern)], check=True)  # fmt: skip
    for n in range(4):
        data = (tmp_path / f"thumb.{n:07d}.jpg").read_bytes()
        s3.put_object(Bucket=bucket, Key=f"{root}/frames/frame_thumb.{n:07d}.jpg", Body=data)
    for n in range(2):
        s3.put_object(Bucket=bucket, Key=f"{root}/frames/frame_poster.{n:07d}.jpg", Body=data)


async def test_a_job_becomes_the_same_result_as_a_local_transcode(
    client: Any, moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    storage: S3Storage = make_storage(moto_endpoint, bucket)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    prefix = "hls/vod/7/run1"
    reported: list[tuple[float, str]] = []

    async def progress(fraction: float, stage: str) -> None:
        reported.append((fraction, stage))
        if len(reported) == 2:  # the job "finishes" while being polled
            put_outputs(s3, bucket, f"streamd/{prefix}", tmp_path)

    with Stubber(client) as stub:
        stub.add_response("create_job", job("SUBMITTED"), {
            "Role": ROLE, "Settings": ANY, "UserMetadata": {"streamd_run": "run1"},
            "ClientRequestToken": "run1",
            "StatusUpdateInterval": "SECONDS_10"})  # fmt: skip
        stub.add_response("get_job", job("PROGRESSING", JobPercentComplete=40), {"Id": JOB_ID})
        stub.add_response("get_job", job("PROGRESSING", JobPercentComplete=90), {"Id": JOB_ID})
        stub.add_response("get_job", job("COMPLETE"), {"Id": JOB_ID})
        result = await run_mediaconvert(
            storage, "originals/7/source.mp4", prefix, INFO, RUNGS,
            MediaConvertOptions(role_arn=ROLE, poll_s=0.01), run="run1", work=tmp_path / "w",
            progress=progress, cancelled=lambda: False, client=client,
        )  # fmt: skip
        stub.assert_no_pending_responses()
    assert [stage for _, stage in reported] == ["transcoding", "transcoding", "finishing"]
    assert reported[0][0] == pytest.approx(0.38) and reported[1][0] == pytest.approx(0.855)
    assert result.master == "master.m3u8"
    assert [(r.name, r.width, r.height, r.bandwidth, r.average_bandwidth, r.playlist)
            for r in result.renditions] == [
        ("720p", 1280, 720, 3_500_000, 3_100_000, "master_720p.m3u8"),
        ("360p", 640, 360, 900_000, 800_000, "master_360p.m3u8"),
    ]  # fmt: skip
    assert result.poster == "frames/frame_poster.0000001.jpg"  # the later capture
    assert result.storyboard_vtt == "storyboard.vtt"
    vtt = s3.get_object(Bucket=bucket, Key=f"streamd/{prefix}/storyboard.vtt")["Body"].read()
    cues = [line for line in vtt.decode().splitlines() if "-->" in line]
    assert cues == ["00:00:00.000 --> 00:00:10.000", "00:00:10.000 --> 00:00:20.000",
                    "00:00:20.000 --> 00:00:30.000", "00:00:30.000 --> 00:00:35.000"]  # fmt: skip
    sprite = s3.head_object(Bucket=bucket, Key=f"streamd/{prefix}/storyboard.jpg")
    assert sprite["ContentType"] == "image/jpeg" and sprite["ContentLength"] > 1000


async def test_a_failed_job_is_a_rejection_and_a_lost_run_cancels_the_job(
    client: Any, moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    storage = make_storage(moto_endpoint, bucket)
    options = MediaConvertOptions(role_arn=ROLE, poll_s=0.01)

    async def progress(fraction: float, stage: str) -> None:
        pass

    with Stubber(client) as stub:
        stub.add_response("create_job", job("SUBMITTED"), None)
        stub.add_response("get_job", job("ERROR", ErrorMessage="Demuxer: bad file",
                                         ErrorCode=1010), {"Id": JOB_ID})  # fmt: skip
        with pytest.raises(VodRejected, match="Demuxer: bad file"):
            await run_mediaconvert(
                storage, "originals/7/source.mp4", "hls/vod/7/r2", INFO, RUNGS, options,
                run="r2", work=tmp_path, progress=progress, cancelled=lambda: False,
                client=client,
            )  # fmt: skip
        stub.add_response("create_job", job("SUBMITTED"), None)
        stub.add_response("get_job", job("PROGRESSING", JobPercentComplete=5), {"Id": JOB_ID})
        stub.add_response("cancel_job", {}, {"Id": JOB_ID})
        with pytest.raises(RunLost):
            await run_mediaconvert(
                storage, "originals/7/source.mp4", "hls/vod/7/r3", INFO, RUNGS, options,
                run="r3", work=tmp_path, progress=progress, cancelled=lambda: True,
                client=client,
            )  # fmt: skip
        stub.assert_no_pending_responses()
