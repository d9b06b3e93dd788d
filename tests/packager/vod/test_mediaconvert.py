"""The ``mediaconvert`` VOD backend: the job document and the API calls.

The job document is checked against botocore's own model of CreateJob: ParamValidator for
structure and types (a misspelt key fails), plus a walk of the same model for what botocore
does not check client-side (enum values, maximums, patterns).

The API calls run against a RECORDED-RESPONSE FAKE, not moto: moto 5.2.6 (the dev venv's) has
no MediaConvert backend (no ``moto/mediaconvert``; ``mock_aws`` answers nothing for it). The
fake is botocore's ``Stubber`` on a real client, with responses written from the MediaConvert
API reference (CreateJob/GetJob/CancelJob/DescribeEndpoints), not captured from AWS. The
Stubber checks every request's parameters, and the responses' shapes, against the service
model, so the calls are exercised down to the serialisation layer; what MediaConvert does with
the job (and which of its errors a late cancel gets) is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import boto3
import botocore.exceptions
import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from packager.types import Rung
from packager.vod import mediaconvert as mc
from packager.vod.transcode import vod_ladder

LADDER = [
    Rung("1080p", 1920, 1080, 30, 5_000_000),
    Rung("720p", 1280, 720, 30, 3_000_000),
    Rung("480p", 854, 480, 30, 1_200_000),
    Rung("360p", 640, 360, 30, 700_000),
]
SRC = "s3://media-in/originals/7/source.mp4"
OUT = "s3://media-out/vod/7/r1"
ROLE = "arn:aws:iam::123456789012:role/MediaConvert"
QUEUE = "arn:aws:mediaconvert:us-east-1:123456789012:queues/Default"
JOB_ID = "1700000000000-abc123"

_MODEL = botocore.session.get_session().get_service_model("mediaconvert")
_CREATE_JOB: Any = _MODEL.operation_model("CreateJob").input_shape


def model_errors(settings: dict[str, Any]) -> list[str]:
    """Everything the CreateJob model rejects in a request carrying these settings."""
    request = {"Role": ROLE, "Settings": settings}
    report = ParamValidator().validate(request, _CREATE_JOB)
    errors = [report.generate_report()] if report.has_errors() else []
    errors.extend(_walk(request, _CREATE_JOB, "CreateJob"))
    return errors


def _walk(value: Any, shape: Any, path: str) -> Iterator[str]:
    """Enums, maximums and patterns: the model's constraints ParamValidator leaves to AWS."""
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:  # unknown keys are ParamValidator's to report
                yield from _walk(item, shape.members[key], f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, shape.value, f"{path}[{key!r}]")
    elif shape.type_name == "string" and isinstance(value, str):
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            yield f"{path}: {value!r} is not one of {shape.name}"
        if "pattern" in meta and not re.search(meta["pattern"], value):
            yield f"{path}: {value!r} does not match {meta['pattern']}"
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: longer than {meta['max']}"
    elif isinstance(value, int | float) and "max" in meta and value > meta["max"]:
        yield f"{path}: {value} above {meta['max']}"


def settings(**kwargs: Any) -> dict[str, Any]:
    source_w = kwargs.pop("source_w", 1920)
    source_h = kwargs.pop("source_h", 1080)
    return mc.job_settings(SRC, OUT, LADDER, source_w, source_h, **kwargs)


def hls(doc: dict[str, Any]) -> dict[str, Any]:
    group: dict[str, Any] = doc["OutputGroups"][0]
    assert group["OutputGroupSettings"]["Type"] == "CMAF_GROUP_SETTINGS"
    return group


def video_outputs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in hls(doc)["Outputs"] if "VideoDescription" in o]


def h264(output: dict[str, Any]) -> dict[str, Any]:
    codec = output["VideoDescription"]["CodecSettings"]
    assert codec["Codec"] == "H_264"
    settings: dict[str, Any] = codec["H264Settings"]
    return settings


def ladder(doc: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [
        (o["NameModifier"], o["VideoDescription"]["Width"], o["VideoDescription"]["Height"])
        for o in video_outputs(doc)
    ]


# --- the job document ---


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"rate_control": "VBR"},
        {"has_audio": False},
        {"source_fps": Fraction(60000, 1001), "segment_s": 4},
        {"source_w": 1080, "source_h": 1920},
        {"source_w": 320, "source_h": 240, "source_fps": Fraction(25)},
        {"source_w": 7680, "source_h": 4320, "source_fps": Fraction(120)},
    ],
)
def test_settings_are_a_valid_create_job_request(kwargs: dict[str, Any]) -> None:
    assert model_errors(settings(**kwargs)) == []


def test_the_model_check_catches_typos_and_bad_values() -> None:
    doc = settings()
    h264(video_outputs(doc)[0])["GopSzie"] = 6.0
    assert any("GopSzie" in e for e in model_errors(doc))
    doc = settings()
    h264(video_outputs(doc)[0])["CodecProfile"] = "HIGH_PROFILE"
    assert any("CodecProfile" in e for e in model_errors(doc))
    doc = settings()
    hls(doc)["OutputGroupSettings"]["CmafGroupSettings"]["Destination"] = "media-out/vod"
    assert any("Destination" in e for e in model_errors(doc))
    doc = settings()
    h264(video_outputs(doc)[0])["MaxBitrate"] = "7500000"
    assert any("MaxBitrate" in e for e in model_errors(doc))


def test_1080p_source_gets_every_rung_with_the_local_rate_control() -> None:
    doc = settings()
    assert ladder(doc) == [
        ("_1080p", 1920, 1080), ("_720p", 1280, 720), ("_480p", 854, 480), ("_360p", 640, 360)
    ]  # fmt: skip
    for output, rung in zip(video_outputs(doc), LADDER, strict=True):
        s = h264(output)
        assert s["CodecProfile"] == "HIGH"
        assert s["RateControlMode"] == "QVBR" and "Bitrate" not in s
        assert s["MaxBitrate"] == rung.video_bitrate * 3 // 2
        assert s["HrdBufferSize"] == rung.video_bitrate * 2
        assert 1 <= s["QvbrSettings"]["QvbrQualityLevel"] <= 10
    vbr = [h264(o) for o in video_outputs(settings(rate_control="VBR"))]
    assert [(s["Bitrate"], s["MaxBitrate"]) for s in vbr] == [
        (r.video_bitrate, r.video_bitrate * 3 // 2) for r in LADDER
    ]
    assert all("QvbrSettings" not in s for s in vbr)


def test_gops_are_closed_aligned_and_one_segment_long() -> None:
    for segment_s in (6, 4):
        doc = settings(segment_s=segment_s)
        cmaf = hls(doc)["OutputGroupSettings"]["CmafGroupSettings"]
        assert cmaf["SegmentLength"] == segment_s
        assert cmaf["SegmentLengthControl"] == "GOP_MULTIPLE"
        assert cmaf["WriteHlsManifest"] == "ENABLED" and cmaf["WriteDashManifest"] == "DISABLED"
        assert cmaf["Destination"] == f"{OUT}/master"
        for output in video_outputs(doc):
            s = h264(output)
            assert (s["GopSize"], s["GopSizeUnits"]) == (segment_s, "SECONDS")
            assert s["GopClosedCadence"] == 1
            assert s["SceneChangeDetect"] == "DISABLED"
            assert output["ContainerSettings"]["Container"] == "CMFC"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        # Rungs at the source's short side: only the one matching it stays.
        ((1280, 720), [("_720p", 1280, 720), ("_480p", 854, 480), ("_360p", 640, 360)]),
        # Between rungs: the bigger rungs are skipped, none is scaled up.
        ((1778, 1000), [("_720p", 1280, 720), ("_480p", 854, 480), ("_360p", 640, 360)]),
        # Portrait: the rung's height is the short side.
        ((720, 1280), [("_720p", 720, 1280), ("_480p", 480, 854), ("_360p", 360, 640)]),
        # Above every rung: all of them, nothing at the source's own 4K.
        ((3840, 2160), [("_1080p", 1920, 1080), ("_720p", 1280, 720), ("_480p", 854, 480),
                        ("_360p", 640, 360)]),
        # Below every rung: one rendition at the source's size.
        ((320, 240), [("_240p", 320, 240)]),
        ((426, 241), [("_240p", 424, 240)]),
    ],
)  # fmt: skip
def test_rungs_at_or_above_the_source_are_skipped(
    size: tuple[int, int], expected: list[tuple[str, int, int]]
) -> None:
    assert ladder(settings(source_w=size[0], source_h=size[1])) == expected


def test_a_source_below_every_rung_gets_the_smallest_rung_scaled_down() -> None:
    (rung,) = mc.vod_rungs(LADDER, 320, 240)
    assert (rung.name, rung.height, rung.fps) == ("240p", 240, 30)
    assert rung.video_bitrate == round(700_000 * (240 / 360) ** 2)
    (output,) = video_outputs(settings(source_w=320, source_h=240))
    assert h264(output)["MaxBitrate"] == rung.video_bitrate * 3 // 2
    assert mc.vod_rungs([], 1920, 1080) == []
    with pytest.raises(ValueError, match="ladder is empty"):
        mc.job_settings(SRC, OUT, [], 1920, 1080)


def test_vod_rungs_agrees_with_the_local_backend() -> None:
    for w, h in [(1920, 1080), (1280, 720), (1778, 1000), (720, 1280), (3840, 2160), (320, 240)]:
        # The same rungs by name (the local ladder's heights are the picture's: a portrait
        # 720p is 720x1280, where vod_rungs keeps the rung's nominal height).
        local = [r.name for r in vod_ladder(LADDER, w, h)]
        assert [r.name for r in mc.vod_rungs(LADDER, w, h)] == local, (w, h)


@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (Fraction(60), Fraction(30)),
        (Fraction(60000, 1001), Fraction(30000, 1001)),
        (Fraction(50), Fraction(25)),
        (Fraction(30), Fraction(30)),
        (Fraction(24000, 1001), Fraction(24000, 1001)),
        (Fraction(120), Fraction(30)),
    ],
)
def test_frame_rate_is_divided_down_to_the_rung_cap(fps: Fraction, expected: Fraction) -> None:
    for output in video_outputs(settings(source_fps=fps)):
        s = h264(output)
        assert s["FramerateControl"] == "SPECIFIED"
        assert s["FramerateConversionAlgorithm"] == "DUPLICATE_DROP"
        assert Fraction(s["FramerateNumerator"], s["FramerateDenominator"]) == expected


def test_unknown_frame_rate_keeps_the_source_rate() -> None:
    for fps in (None, Fraction(1000)):
        for output in video_outputs(settings(source_fps=fps)):
            s = h264(output)
            assert s["FramerateControl"] == "INITIALIZE_FROM_SOURCE"
            assert "FramerateNumerator" not in s


def test_audio_is_one_aac_rendition_every_rung_refers_to() -> None:
    doc = settings()
    audio = [o for o in hls(doc)["Outputs"] if "AudioDescriptions" in o]
    assert len(audio) == 1 and "VideoDescription" not in audio[0]
    (description,) = audio[0]["AudioDescriptions"]
    aac = description["CodecSettings"]
    assert aac["Codec"] == "AAC"
    assert aac["AacSettings"]["Bitrate"] == 128_000
    assert aac["AacSettings"]["CodecProfile"] == "LC"
    selector = description["AudioSourceName"]
    assert selector in doc["Inputs"][0]["AudioSelectors"]
    group = audio[0]["ContainerSettings"]["CmfcSettings"]["AudioGroupId"]
    for output in video_outputs(doc):
        assert output["ContainerSettings"]["CmfcSettings"]["AudioRenditionSets"] == group
        assert "AudioDescriptions" not in output

    silent = settings(has_audio=False)
    assert all("AudioDescriptions" not in o for o in hls(silent)["Outputs"])
    assert "AudioSelectors" not in silent["Inputs"][0]
    assert all("CmfcSettings" not in o["ContainerSettings"] for o in video_outputs(silent))


def test_frame_captures_give_the_poster_and_the_storyboard_tiles() -> None:
    doc = settings(poster_at_s=5, thumbnail_interval_s=10)
    (group,) = [g for g in doc["OutputGroups"] if g["Name"] == "Frames"]
    assert group["OutputGroupSettings"]["Type"] == "FILE_GROUP_SETTINGS"
    assert group["OutputGroupSettings"]["FileGroupSettings"]["Destination"] == f"{OUT}/frames/frame"
    outputs = {o["NameModifier"]: o for o in group["Outputs"]}
    assert set(outputs) == {"_poster", "_thumb"}
    for name, size, every, most in [
        ("_poster", (1280, 720), 5, 2), ("_thumb", (160, 90), 10, 10_000_000)
    ]:  # fmt: skip
        output = outputs[name]
        video = output["VideoDescription"]
        capture = video["CodecSettings"]["FrameCaptureSettings"]
        assert video["CodecSettings"]["Codec"] == "FRAME_CAPTURE"
        assert output["Extension"] == "jpg" and output["ContainerSettings"]["Container"] == "RAW"
        assert (video["Width"], video["Height"]) == size
        assert Fraction(capture["FramerateNumerator"], capture["FramerateDenominator"]) == (
            Fraction(1, every)
        )
        assert capture["MaxCaptures"] == most
    # A small source: no capture bigger than the source itself.
    small = settings(source_w=320, source_h=240)
    sizes = [(o["VideoDescription"]["Width"], o["VideoDescription"]["Height"])
             for o in small["OutputGroups"][1]["Outputs"]]  # fmt: skip
    assert sizes == [(320, 240), (120, 90)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="source"):
        mc.job_settings("/tmp/source.mp4", OUT, LADDER, 1920, 1080)
    with pytest.raises(ValueError, match="outputs"):
        mc.job_settings(SRC, "https://example.com/out", LADDER, 1920, 1080)
    with pytest.raises(ValueError, match="positive"):
        mc.job_settings(SRC, OUT, LADDER, 1920, 1080, segment_s=0)
    # A trailing slash on the prefix does not double up.
    doc = mc.job_settings(SRC, OUT + "/", LADDER, 1920, 1080)
    assert hls(doc)["OutputGroupSettings"]["CmafGroupSettings"]["Destination"] == f"{OUT}/master"


# --- the API calls, against the recorded-response fake (see the module docstring) ---


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def client(aws_env: None) -> Any:
    return boto3.session.Session().client("mediaconvert", region_name="us-east-1")


def job(status: str, **extra: Any) -> dict[str, Any]:
    """A Job as GetJob/CreateJob return it (the members the API reference marks as always
    present, plus the given ones)."""
    return {"Job": {"Id": JOB_ID, "Role": ROLE, "Settings": {}, "Status": status, **extra}}


def test_submit_sends_the_settings_and_returns_the_job_id(client: Any) -> None:
    doc = settings()
    with Stubber(client) as stub:
        stub.add_response(
            "create_job",
            job("SUBMITTED", Queue=QUEUE, UserMetadata={"video_id": "7", "run": "r1"}),
            {
                "Role": ROLE,
                "Queue": QUEUE,
                "Settings": doc,
                "UserMetadata": {"video_id": "7", "run": "r1"},
                "StatusUpdateInterval": "SECONDS_10",
                "ClientRequestToken": "video-7-r1",
            },
        )
        stub.add_response(
            "create_job",
            job("SUBMITTED"),
            {
                "Role": ROLE,
                "Settings": doc,
                "UserMetadata": {},
                # No ClientRequestToken: botocore adds its own after the Stubber's check.
                "StatusUpdateInterval": "SECONDS_10",
            },
        )
        job_id = mc.submit(
            client, role_arn=ROLE, queue_arn=QUEUE, settings=doc,
            user_metadata={"video_id": "7", "run": "r1"}, client_request_token="video-7-r1",
        )  # fmt: skip
        assert job_id == JOB_ID
        assert mc.submit(client, role_arn=ROLE, queue_arn=None, settings=doc, user_metadata={})
        stub.assert_no_pending_responses()


def test_submit_without_a_job_id_is_an_error(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_response("create_job", {}, None)
        with pytest.raises(mc.MediaConvertError, match="job id"):
            mc.submit(client, role_arn=ROLE, queue_arn=None, settings={}, user_metadata={})


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (job("SUBMITTED"), ("queued", 0, None)),
        (job("PROGRESSING", CurrentPhase="PROBING"), ("running", 0, None)),
        (job("PROGRESSING", CurrentPhase="TRANSCODING", JobPercentComplete=42),
         ("running", 42, None)),
        (job("COMPLETE", JobPercentComplete=99), ("complete", 100, None)),
        (job("ERROR", ErrorCode=1010, ErrorMessage="Unable to open input file [s3://x/y]."),
         ("failed", 0, "Unable to open input file [s3://x/y]. (MediaConvert error 1010)")),
        (job("ERROR", JobPercentComplete=37),
         ("failed", 37, "MediaConvert could not transcode the video.")),
        (job("CANCELED", JobPercentComplete=12),
         ("cancelled", 12, "The MediaConvert job was cancelled.")),
    ],
)  # fmt: skip
def test_poll_maps_status_percent_and_error(
    client: Any, response: dict[str, Any], expected: tuple[str, int, str | None]
) -> None:
    with Stubber(client) as stub:
        stub.add_response("get_job", response, {"Id": JOB_ID})
        result = mc.poll(client, JOB_ID)
    assert tuple(result) == expected
    status, percent, error = result  # unpacks as the plain triple
    assert (result.status, result.percent, result.error_message) == (status, percent, error)


def test_poll_refuses_a_status_it_does_not_know(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_response("get_job", job("PAUSED"), {"Id": JOB_ID})
        with pytest.raises(mc.MediaConvertError, match="PAUSED"):
            mc.poll(client, JOB_ID)


def test_poll_passes_api_errors_through(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("get_job", "NotFoundException", "Job not found", 404)
        with pytest.raises(botocore.exceptions.ClientError):
            mc.poll(client, JOB_ID)


def test_cancel(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_response("cancel_job", {}, {"Id": JOB_ID})
        mc.cancel(client, JOB_ID)
        # A job that ended meanwhile: MediaConvert refuses, and that is fine.
        stub.add_client_error("cancel_job", "ConflictException", "The job is complete.", 409)
        stub.add_response("get_job", job("COMPLETE"), {"Id": JOB_ID})
        mc.cancel(client, JOB_ID)
        # A refusal while the job still runs is a real failure.
        stub.add_client_error("cancel_job", "TooManyRequestsException", "Slow down", 429)
        stub.add_response("get_job", job("PROGRESSING"), {"Id": JOB_ID})
        with pytest.raises(botocore.exceptions.ClientError):
            mc.cancel(client, JOB_ID)
        stub.assert_no_pending_responses()


def test_make_client_endpoints(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    original = boto3.session.Session.client

    def client(self: boto3.session.Session, name: str, **kwargs: Any) -> Any:
        real = original(self, name, **kwargs)  # type: ignore[call-overload]
        made.append(real)
        if len(made) == 1 and kwargs.get("endpoint_url") is None:
            stub = Stubber(real)
            stub.add_response(
                "describe_endpoints",
                {"Endpoints": [{"Url": "https://abcd1234.mediaconvert.us-east-1.amazonaws.com"}]},
                {"Mode": "DEFAULT"},
            )
            stub.activate()
        return real

    monkeypatch.setattr(boto3.session.Session, "client", client)
    regional = mc.make_client("us-east-1")
    assert regional.meta.endpoint_url == "https://mediaconvert.us-east-1.amazonaws.com"  # type: ignore[attr-defined]
    made.clear()
    discovered = mc.make_client("us-east-1", discover_endpoint=True)
    assert discovered.meta.endpoint_url == "https://abcd1234.mediaconvert.us-east-1.amazonaws.com"  # type: ignore[attr-defined]
    made.clear()
    given = mc.make_client("us-east-1", "http://127.0.0.1:9000", discover_endpoint=True)
    assert given.meta.endpoint_url == "http://127.0.0.1:9000"  # type: ignore[attr-defined]
    assert len(made) == 1  # no discovery call
