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

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ingest.whip.server import WhipIngest
from ingest.whip.signaling import SignalingError
from web.webrtc_http import (
    CORS,
    PREFLIGHT,
    SDP,
    created,
    no_patch,
    peer_of,
    read_offer,
    refusal,
)

log = logging.getLogger(__name__)

WHIP_PATH = "/whip"


def whip_routes(whip: WhipIngest) -> list[BaseRoute]:
    async def endpoint(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={**PREFLIGHT, "Accept-Post": SDP})
        peer = peer_of(request)
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            log.warning("whip %s refused (no_token): no Bearer token", peer)
            return refusal(
                401, "unauthorized", "send the stream key as a Bearer token",
                {"WWW-Authenticate": 'Bearer realm="whip"'},
            )  # fmt: skip
        offer = await read_offer(request, log, "whip")
        if isinstance(offer, Response):
            return offer
        try:
            publisher, answer = await whip.publish(token.strip(), offer, peer)
        except SignalingError as exc:
            headers = {"Retry-After": "5"} if exc.status == 503 else None
            return refusal(exc.status, exc.code, exc.message, headers)
        location = f"{WHIP_PATH}/{quote(publisher.resource_id)}"
        return created(answer, location, publisher.etag, whip.limits.ice_servers)

    async def resource(request: Request) -> Response:
        resource_id = request.path_params["resource_id"]
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={**PREFLIGHT, "Allow": "DELETE, OPTIONS"})
        if request.method == "PATCH":
            return no_patch(log, "whip", resource_id)
        if not await whip.delete(resource_id):
            log.info("whip: DELETE of an unknown or ended session %s…", resource_id[:8])
            return refusal(404, "not_found", "no such WHIP session (it may have ended)")
        return Response(status_code=200, headers=CORS)

    return [
        Route(WHIP_PATH, endpoint, methods=["POST", "OPTIONS"]),
        Route(WHIP_PATH + "/{resource_id}", resource, methods=["DELETE", "PATCH", "OPTIONS"]),
    ]
