"""The WHIP endpoint (RFC 9725): ``POST /whip`` with an SDP offer and the stream key as bearer
token, answered ``201`` with the SDP answer; ``DELETE /whip/{resource}`` ends the publish.

OBS 30+: Settings -> Stream -> Service "WHIP", Server ``http(s)://HOST:8080/whip``, Bearer
Token = the live's stream key.

Answers, each refusal with the API's JSON error body and a log line (`ingest.whip.server`):
201 + ``Location``/``ETag``/``Link`` (one per STUN/TURN server, RFC 9725 section 4.6 syntax);
400 bad SDP; 401 no or wrong key; 403 an owner who may not stream; 409 the live already has a
publisher (RTMP or WHIP, any process); 413 an offer too large; 415 not ``application/sdp``;
422 no H.264 video; 503 at capacity or the database down. ``PATCH`` (trickle ICE, ICE
restart) is not supported: 405 with ``Allow``, as the RFC permits; the answer carries every
server candidate, so a publisher needs none. ``OPTIONS`` answers CORS preflights and
``Accept-Post`` for browser publishers; the key is a bearer token, never a cookie, so any
origin may publish with it.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ingest.whip.publisher import WhipError
from ingest.whip.server import IceServer, WhipIngest
from web.api import read_capped
from web.errors import error_response

log = logging.getLogger(__name__)

WHIP_PATH = "/whip"
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


def _error(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Response:
    return error_response(status, code, message, headers={**CORS, **(extra or {})})


def whip_routes(whip: WhipIngest) -> list[BaseRoute]:
    async def endpoint(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={**PREFLIGHT, "Accept-Post": SDP})
        peer = f"{request.client.host}:{request.client.port}" if request.client else "?"
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            log.warning("whip %s refused (no_token): no Bearer token", peer)
            return _error(
                401, "unauthorized", "send the stream key as a Bearer token",
                {"WWW-Authenticate": 'Bearer realm="whip"'},
            )  # fmt: skip
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != SDP:
            log.warning("whip %s refused (unsupported_media_type): %r", peer, content_type)
            return _error(415, "unsupported_media_type", f"send the offer as {SDP}",
                          {"Accept-Post": SDP})  # fmt: skip
        try:
            body = await read_capped(request, MAX_OFFER_BYTES)
        except ClientDisconnect:
            log.info("whip %s: the client went away during the offer", peer)
            return Response(status_code=400)
        if body is None:
            log.warning("whip %s refused (too_large): offer over %d bytes", peer, MAX_OFFER_BYTES)
            return _error(413, "too_large", f"an offer is at most {MAX_OFFER_BYTES} bytes")
        try:
            offer = body.decode("utf-8")
        except UnicodeDecodeError:
            offer = ""
        if "v=0" not in offer or "m=" not in offer:
            log.warning("whip %s refused (bad_sdp): not an SDP offer", peer)
            return _error(400, "bad_sdp", "the body is not an SDP offer")
        try:
            publisher, answer = await whip.publish(token.strip(), offer, peer)
        except WhipError as exc:
            headers = {"Retry-After": "5"} if exc.status == 503 else None
            return _error(exc.status, exc.code, exc.message, headers)
        headers = {
            **CORS,
            "Location": f"{WHIP_PATH}/{quote(publisher.resource_id)}",
            "ETag": publisher.etag,
        }
        links = [link_header(s) for s in whip.limits.ice_servers]
        response = Response(answer, status_code=201, media_type=SDP, headers=headers)
        for link in links:
            response.headers.append("Link", link)
        return response

    async def resource(request: Request) -> Response:
        resource_id = request.path_params["resource_id"]
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={**PREFLIGHT, "Allow": "DELETE, OPTIONS"})
        if request.method == "PATCH":
            log.info("whip: PATCH on %s refused (trickle ICE and ICE restarts unsupported)",
                     resource_id[:8])  # fmt: skip
            return _error(
                405, "method_not_allowed",
                "trickle ICE and ICE restarts are not supported: the answer has every candidate",
                {"Allow": "DELETE, OPTIONS"},
            )  # fmt: skip
        if not await whip.delete(resource_id):
            log.info("whip: DELETE of an unknown or ended session %s…", resource_id[:8])
            return _error(404, "not_found", "no such WHIP session (it may have ended)")
        return Response(status_code=200, headers=CORS)

    return [
        Route(WHIP_PATH, endpoint, methods=["POST", "OPTIONS"]),
        Route(WHIP_PATH + "/{resource_id}", resource, methods=["DELETE", "PATCH", "OPTIONS"]),
    ]
