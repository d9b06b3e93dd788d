"""WHIP ingest end to end, against ``streamd serve`` as an operator runs it: an aiortc publisher
(H.264 + Opus, `tests.whip_client`) -> the same packager as RTMP -> HLS that the ffmpeg CLI
decodes in every rendition, with A/V in sync; and the HTTP contract of RFC 9725, one test per
answer, including the offer OBS 30.2+ sends (no candidates, ``a=group:LS``, upper-case codec
names). Nothing is mocked: real PostgreSQL (embedded), real WebRTC over loopback UDP.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import imageio_ffmpeg
import m3u8
import pytest

from tests.helpers import ServeProcess, cli_env, run_cli, serving
from tests.whip_client import marks, publish

pytestmark = pytest.mark.slow

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
PASSWORD = "correct horse battery staple\n"
MAX_PUBLISHERS = 3

# The offer OBS 30.2+ sends (libdatachannel): no candidates, `a=group:LS`, session-level ICE
# credentials, upper-case OPUS as some builds write it, H.264 that is really High profile.
OBS_OFFER = "\r\n".join([
    "v=0", "o=rtc 3877212184 0 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "a=group:BUNDLE 0 1", "a=group:LS 0 1", "a=msid-semantic:WMS *",
    "a=setup:actpass", "a=ice-ufrag:nxcM", "a=ice-pwd:ezjAjgSSLLvbRhUA1zc6Se",
    "a=ice-options:ice2,trickle",
    "a=fingerprint:sha-256 4E:7F:6B:1A:0C:55:2D:9E:88:11:3A:B2:C4:D5:E6:F7:08:19:2A:3B:4C:5D:"
    "6E:7F:80:91:A2:B3:C4:D5:E6:F7",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendonly",
    "a=ssrc:3388068600 cname:Yuu1KDxQcc3L5CpY",
    "a=ssrc:3388068600 msid:XmQSKutZo7zYcEQl XmQSKutZo7zYcEQl-audio",
    "a=msid:XmQSKutZo7zYcEQl XmQSKutZo7zYcEQl-audio", "a=rtcp-mux",
    "a=rtpmap:111 OPUS/48000/2",
    "a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:1",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:2 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "a=sendonly",
    "a=ssrc:3388068601 cname:Yuu1KDxQcc3L5CpY",
    "a=ssrc:3388068601 msid:XmQSKutZo7zYcEQl XmQSKutZo7zYcEQl-video",
    "a=msid:XmQSKutZo7zYcEQl XmQSKutZo7zYcEQl-video", "a=rtcp-mux",
    "a=rtpmap:96 H264/90000", "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli",
    "a=rtcp-fb:96 ccm fir", "a=rtcp-fb:96 goog-remb",
    "a=fmtp:96 profile-level-id=640c1f;packetization-mode=1;level-asymmetry-allowed=1",
    "",
])  # fmt: skip


@dataclass
class Platform:
    server: ServeProcess
    env: dict[str, str]
    log: list[str]
    lives: dict[str, dict[str, str]]

    @property
    def whip(self) -> str:
        return f"{self.server.base_url}/whip"

    def post(
        self, body: str, key: str | None, content_type: str = "application/sdp"
    ) -> httpx.Response:
        headers = {"Content-Type": content_type}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.post(self.whip, content=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    with tempfile.TemporaryDirectory(prefix="streamd-serve-whip-") as tmp:
        env = cli_env(
            Path(tmp) / "var",
            STREAMD_HLS_LADDER="240p:426x240@30:400k",
            STREAMD_HLS_WINDOW="30",
            STREAMD_HLS_RECONNECT_WINDOW="2",
            STREAMD_HLS_LADDER_SHEDDING="false",
            STREAMD_WHIP_MAX_PUBLISHERS=str(MAX_PUBLISHERS),
            STREAMD_WHIP_ICE_SERVERS="stun:stun.example.net:3478",
        )
        lives: dict[str, dict[str, str]] = {}
        for user, role in (("lena", "creator"), ("otto", "creator")):
            made = run_cli("user", "create", "--username", user, "--email", f"{user}@example.com",
                           "--password-stdin", "--role", role, env=env, stdin=PASSWORD)  # fmt: skip
            assert made.returncode == 0, made.stderr
        for name in ("main", "busy", "cap1", "cap2", "cap3", "obs", "rtmp"):
            created = run_cli("live", "create", "--user", "lena", "--title", name, env=env)
            lives[name] = json.loads(created.stdout)
        lives["demoted"] = json.loads(
            run_cli("live", "create", "--user", "otto", "--title", "d", env=env).stdout
        )
        assert run_cli("user", "role", "--username", "otto", "--role", "viewer",
                       env=env).returncode == 0  # fmt: skip
        with serving(env) as (server, log):
            yield Platform(server, server.env, log, lives)


def aiortc_offer() -> str:
    """A real aiortc offer (H.264 + Opus), never connected."""

    async def make() -> str:
        from aiortc import RTCConfiguration, RTCPeerConnection

        from tests.whip_client import MarkedAudio, MarkedVideo, _Clock

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        clock = _Clock()
        pc.addTransceiver(MarkedVideo(clock, 64, 64), direction="sendonly")
        pc.addTransceiver(MarkedAudio(clock), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


def error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json")
    return str(response.json()["error"]["code"])


def delete(platform: Platform, response: httpx.Response, key: str) -> None:
    url = httpx.URL(platform.whip).join(response.headers["location"])
    gone = httpx.delete(url, headers={"Authorization": f"Bearer {key}"})
    assert gone.status_code == 200


# --- the status-code contract ---


def test_no_token_is_401(platform: Platform) -> None:
    response = platform.post(aiortc_offer(), None)
    assert response.status_code == 401 and error_code(response) == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_wrong_key_is_401(platform: Platform) -> None:
    response = platform.post(aiortc_offer(), "not-a-key-of-anyone")
    assert response.status_code == 401 and error_code(response) == "unknown_key"
    assert any("whip" in line and "unknown_key" in line for line in platform.log)


def test_an_owner_who_may_not_stream_is_403(platform: Platform) -> None:
    response = platform.post(aiortc_offer(), platform.lives["demoted"]["stream_key"])
    assert response.status_code == 403 and error_code(response) == "owner_not_creator"


def test_a_body_that_is_not_sdp_is_415(platform: Platform) -> None:
    response = platform.post("{}", platform.lives["main"]["stream_key"], "application/json")
    assert response.status_code == 415 and error_code(response) == "unsupported_media_type"
    assert response.headers["accept-post"] == "application/sdp"


def test_bad_sdp_is_400(platform: Platform) -> None:
    response = platform.post("hello", platform.lives["main"]["stream_key"])
    assert response.status_code == 400 and error_code(response) == "bad_sdp"


def test_an_offer_too_large_is_413(platform: Platform) -> None:
    response = platform.post("v=0\r\n" + "a=x\r\n" * 20_000, platform.lives["main"]["stream_key"])
    assert response.status_code == 413


def test_no_h264_is_422(platform: Platform) -> None:
    # VP8 is a codec aiortc knows; AV1 (OBS's AV1 encoder) one it does not.
    for codec in ("VP8/90000", "AV1/90000"):
        offer = OBS_OFFER.replace("H264/90000", codec)
        response = platform.post(offer, platform.lives["main"]["stream_key"])
        assert response.status_code == 422 and error_code(response) == "unsupported_codec"
    # Refused before anything was held: the live takes a publisher at once.
    ok = platform.post(aiortc_offer(), platform.lives["main"]["stream_key"])
    assert ok.status_code == 201
    delete(platform, ok, platform.lives["main"]["stream_key"])


def test_simulcast_is_422(platform: Platform) -> None:
    offer = OBS_OFFER.replace("a=sendonly\r\na=ssrc:3388068601", "a=sendonly\r\na=rid:h send\r\n"
                              "a=simulcast:send h\r\na=ssrc:3388068601")  # fmt: skip
    response = platform.post(offer, platform.lives["main"]["stream_key"])
    assert response.status_code == 422 and error_code(response) == "simulcast_unsupported"


def test_a_busy_key_is_409_over_whip_and_over_rtmp(platform: Platform) -> None:
    key = platform.lives["busy"]["stream_key"]
    first = platform.post(aiortc_offer(), key)
    assert first.status_code == 201
    second = platform.post(aiortc_offer(), key)
    assert second.status_code == 409 and error_code(second) == "already_publishing"
    rtmp = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i",
         "testsrc2=size=160x120:rate=15", "-t", "2", "-c:v", "libx264", "-f", "flv",
         f"rtmp://127.0.0.1:{platform.env['STREAMD_RTMP_PORT']}/live/{key}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rtmp.returncode != 0  # refused: the WHIP publisher holds the live
    delete(platform, first, key)


def test_a_live_held_over_rtmp_refuses_whip_with_409(platform: Platform) -> None:
    key = platform.lives["rtmp"]["stream_key"]
    rtmp = subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i",
         "testsrc2=size=160x120:rate=15", "-t", "20", "-c:v", "libx264", "-g", "15", "-f", "flv",
         f"rtmp://127.0.0.1:{platform.env['STREAMD_RTMP_PORT']}/live/{key}"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        live_id = platform.lives["rtmp"]["id"]
        deadline = time.monotonic() + 20
        while (
            httpx.get(f"{platform.server.base_url}/api/lives/{live_id}").json()["status"] != "live"
        ):
            assert time.monotonic() < deadline, "the RTMP publish never went live"
            time.sleep(0.2)
        response = platform.post(aiortc_offer(), key)
        assert response.status_code == 409 and error_code(response) == "already_publishing"
    finally:
        rtmp.kill()
        rtmp.wait()


def test_at_capacity_is_503_with_retry_after(platform: Platform) -> None:
    held = []
    for name in ("cap1", "cap2", "cap3"):
        response = platform.post(aiortc_offer(), platform.lives[name]["stream_key"])
        assert response.status_code == 201
        held.append((response, platform.lives[name]["stream_key"]))
    over = platform.post(aiortc_offer(), platform.lives["main"]["stream_key"])
    assert over.status_code == 503 and error_code(over) == "at_capacity"
    assert over.headers["retry-after"] == "5"
    for response, key in held:
        delete(platform, response, key)


def test_options_answers_cors_and_accept_post(platform: Platform) -> None:
    response = httpx.options(platform.whip, headers={
        "Origin": "https://studio.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})  # fmt: skip
    assert response.status_code == 204
    assert response.headers["accept-post"] == "application/sdp"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "Authorization" in response.headers["access-control-allow-headers"]


def test_patch_is_405_with_allow_and_delete_ends_the_session(platform: Platform) -> None:
    key = platform.lives["main"]["stream_key"]
    response = platform.post(aiortc_offer(), key)
    assert response.status_code == 201
    resource = httpx.URL(platform.whip).join(response.headers["location"])
    sdpfrag = {"Content-Type": "application/trickle-ice-sdpfrag", "Authorization": f"Bearer {key}"}
    patch = httpx.patch(resource, content="a=ice-ufrag:x\r\n", headers=sdpfrag)
    assert patch.status_code == 405 and patch.headers["allow"] == "DELETE, OPTIONS"
    delete(platform, response, key)
    again = httpx.delete(resource, headers={"Authorization": f"Bearer {key}"})
    assert again.status_code == 404
    # The live is free again at once.
    free = platform.post(aiortc_offer(), key)
    assert free.status_code == 201
    delete(platform, free, key)


def test_obs_offer_without_candidates_gets_every_candidate_in_the_answer(
    platform: Platform,
) -> None:
    key = platform.lives["obs"]["stream_key"]
    response = platform.post(OBS_OFFER, key)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/sdp"
    assert response.headers["location"].startswith("/whip/")
    assert response.headers["etag"].startswith('"')
    assert response.headers.get_list("link") == ['<stun:stun.example.net:3478>; rel="ice-server"']
    answer = response.text
    assert "a=candidate:" in answer and " typ host" in answer
    assert "a=rtpmap:96 H264/90000" in answer  # OBS's payload types kept
    assert "a=rtpmap:111 opus/48000/2" in answer
    assert "a=setup:active" in answer or "a=setup:passive" in answer
    delete(platform, response, key)


# --- media ---


def test_an_aiortc_publish_becomes_hls_every_rendition_decodes_av_in_sync(
    platform: Platform,
) -> None:
    live = platform.lives["main"]
    base = f"{platform.server.base_url}/hls/{live['id']}"
    result = asyncio.run(publish(platform.whip, live["stream_key"], 9.0))
    assert result.status == 201 and result.connected, (result.status, result.body)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            httpx.get(f"{platform.server.base_url}/api/lives/{live['id']}").json()["status"]
            == "ended"
        ):
            break
        time.sleep(0.2)
    master_url = f"{base}/master.m3u8"
    master = m3u8.loads(httpx.get(master_url).text)
    names = sorted(p.uri.split("/")[1] for p in master.playlists)
    assert names == ["240p", "source"], master.dumps()
    for index, variant in enumerate(master.playlists):
        played = subprocess.run(
            [FFMPEG, "-hide_banner", "-v", "warning", "-nostdin", "-i", master_url,
             "-map", f"0:v:{index}", "-map", "0:a:0", "-f", "null", "-"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert played.returncode == 0 and played.stderr == "", (variant.uri, played.stderr)
        flashes, beeps = marks(f"{base}/{variant.uri.rsplit('/', 1)[0]}")
        name = variant.uri.split("/")[1]
        assert len(flashes) >= 6, (name, flashes)
        assert len(beeps) >= 6, (name, beeps)
        offsets = [min(abs(f - b) for b in beeps) for f in flashes]
        print(name, "A/V offsets (s):", [round(o, 3) for o in offsets])
        assert max(offsets) < 0.1, (name, flashes, beeps)
    assert not any("Traceback" in line for line in platform.log), "".join(platform.log[-40:])
