"""What WHIP publishing and WHEP playback share in their offer/answer exchange: a refusal
carries the HTTP status and the API's error code it is answered with."""

from __future__ import annotations


class SignalingError(Exception):
    """A refusal with its HTTP status and the API's error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
