"""What a WHIP publisher may send, and aiortc taught to accept it.

H.264 is passed through without decoding, so any profile a player can decode is welcome: OBS
sends Main or High, browsers Constrained Baseline. aiortc's codec list (its own encoder's
profiles, 42001f and 42e01f) would refuse Main and High at negotiation, so `accept_h264_profiles`
adds them to aiortc's process-wide list, once. Audio is Opus (transcoded to AAC).
"""

from __future__ import annotations

from aiortc.codecs import CODECS
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

#: Main, High and Constrained High, level 3.1 (the level is not compared at negotiation).
EXTRA_H264_PROFILES = ("4d001f", "64001f", "640c1f")
_FIRST_EXTRA_PT = 121  # above aiortc's own dynamic payload types (97 up)

VIDEO = "H264"
AUDIO = "opus"


def accept_h264_profiles() -> None:
    video = CODECS["video"]
    known = {
        str(c.parameters.get("profile-level-id", "")).lower()
        for c in video
        if c.mimeType.lower() == "video/h264"
    }
    for index, profile in enumerate(EXTRA_H264_PROFILES):
        if profile in known:
            continue
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90_000,
                payloadType=_FIRST_EXTRA_PT + index,
                rtcpFeedback=[
                    RTCRtcpFeedback(type="nack"),
                    RTCRtcpFeedback(type="nack", parameter="pli"),
                    RTCRtcpFeedback(type="goog-remb"),
                ],
                parameters={
                    "level-asymmetry-allowed": "1",
                    "packetization-mode": "1",
                    "profile-level-id": profile,
                },
            )
        )


def keep_codecs(transceiver: RTCRtpTransceiver, kept: list[RTCRtpCodecParameters]) -> bool:
    """Answer with ``kept`` only, and their retransmission (RTX) formats; False when ``kept``
    is empty (the offer has none of them: nothing is changed)."""
    if not kept:
        return False
    types = {c.payloadType for c in kept}
    transceiver._codecs = kept + [
        c for c in transceiver._codecs
        if c.name.lower() == "rtx" and c.parameters.get("apt") in types
    ]  # fmt: skip
    return True
