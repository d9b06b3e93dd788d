"""What the WHIP and WHEP endpoints share over HTTP: the offer's checks (415, 413, 400), CORS,
the ``Link`` headers for ICE servers, and refusals with the API's JSON error body."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ingest.whip.server import IceServer
from web.api import read_capped
from web.errors import error_response

SDP = "application/sdp"
MAX_OFFER_BYTES = 64 * 1024  # an offer is a few KiB; a browser's with every codec ~10
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Post, Accept-Patch",
}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Max-Age": "86400",
}


def link_header(server: IceServer) -> str:
    """One ``Link`` value for a STUN/TURN server (RFC 9725 section 4.6)."""
    value = f'<{server.urls}>; rel="ice-server"'
    if server.username is not None and server.credential is not None:
        value += (
            f'; username="{_quoted(server.username)}"; credential="{_quoted(server.credential)}"'
            '; credential-type="password"'
        )
    return value


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def refusal(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Response:
    return error_response(status, code, message, headers={**CORS, **(extra or {})})


def peer_of(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


async def read_offer(request: Request, log: logging.Logger, what: str) -> str | Response:
    """The SDP offer of a POST, or the refusal to answer with (logged as ``what``)."""
    peer = peer_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != SDP:
        log.warning("%s %s refused (unsupported_media_type): %r", what, peer, content_type)
        return refusal(415, "unsupported_media_type", f"send the offer as {SDP}",
                       {"Accept-Post": SDP})  # fmt: skip
    try:
        body = await read_capped(request, MAX_OFFER_BYTES)
    except ClientDisconnect:
        log.info("%s %s: the client went away during the offer", what, peer)
        return Response(status_code=400)
    if body is None:
        log.warning("%s %s refused (too_large): offer over %d bytes", what, peer, MAX_OFFER_BYTES)
        return refusal(413, "too_large", f"an offer is at most {MAX_OFFER_BYTES} bytes")
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        offer = ""
    if "v=0" not in offer or "m=" not in offer:
        log.warning("%s %s refused (bad_sdp): not an SDP offer", what, peer)
        return refusal(400, "bad_sdp", "the body is not an SDP offer")
    return offer


def created(answer: str, location: str, etag: str, servers: tuple[IceServer, ...]) -> Response:
    """201 with the answer, where the session lives, and one Link per ICE server."""
    headers = {**CORS, "Location": location, "ETag": etag}
    response = Response(answer, status_code=201, media_type=SDP, headers=headers)
    for server in servers:
        response.headers.append("Link", link_header(server))
    return response


def no_patch(log: logging.Logger, what: str, resource_id: str) -> Response:
    log.info("%s: PATCH on %s… refused (trickle ICE and ICE restarts unsupported)",
             what, resource_id[:8])  # fmt: skip
    return refusal(
        405, "method_not_allowed",
        "trickle ICE and ICE restarts are not supported: the answer has every candidate",
        {"Allow": "DELETE, OPTIONS"},
    )  # fmt: skip
