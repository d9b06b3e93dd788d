"""The one exception type for everything an RTMP peer can cause."""

from __future__ import annotations


class RtmpProtocolError(Exception):
    """The peer broke the protocol or went past one of our caps.

    ``reason`` is a short snake_case code (``"bad_version"``,
    ``"chunk_size_too_large"``, ``"message_too_large"``, ``"amf_too_deep"`` ...)
    so the server glue can count rejections by cause without parsing messages.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
