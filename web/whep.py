"""WebRTC playback (WHEP, draft-ietf-wish-whep): ``POST /whep/{live_id}`` with a receive-only
SDP offer, answered ``201`` with the answer; ``DELETE /whep/{live_id}/{resource}`` ends it.

The live's source rendition as it arrives, under a second behind (HLS is seconds behind):
H.264 passed through, the audio as Opus. A sold live plays for whoever its ``/hls`` plays
for: ``POST /api/lives/{id}/playback`` sets the grant cookie for ``/whep/{id}`` too.

Answers, each refusal with the API's JSON error body and a log line: 201 + ``Location``/
``ETag``/``Link``; 400 bad SDP; 403 a sold live without a grant; 404 the live is not on air
on this server; 413; 415; 422 no H.264 to receive, or a source WebRTC cannot carry
(HEVC/AV1, B-frames); 503 at capacity. ``PATCH`` 405 with ``Allow``, as for WHIP.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ingest.whip.signaling import SignalingError
from packager.whep.server import WhepServer
from web.playback import PlaybackGuard
from web.webrtc_http import CORS, PREFLIGHT, SDP, created, no_patch, peer_of, read_offer, refusal

log = logging.getLogger(__name__)

WHEP_PATH = "/whep"


def whep_routes(whep: WhepServer, guard: PlaybackGuard) -> list[BaseRoute]:
    async def endpoint(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={**PREFLIGHT, "Accept-Post": SDP})
        live_id: int = request.path_params["live_id"]
        peer = peer_of(request)
        offer = await read_offer(request, log, "whep")
        if isinstance(offer, Response):
            return offer
        allowed = await guard.check(request, "live", live_id)
        if isinstance(allowed, Response):
            allowed.headers.update(CORS)
            return allowed
        try:
            viewer = await whep.play(live_id, offer, peer)
        except SignalingError as exc:
            log.warning("whep %s refused (%s): live %d: %s", peer, exc.code, live_id, exc.message)
            headers = {"Retry-After": "5"} if exc.status == 503 else None
            return refusal(exc.status, exc.code, exc.message, headers)
        location = f"{WHEP_PATH}/{live_id}/{quote(viewer.resource_id)}"
        return created(viewer.answer, location, viewer.etag, whep.limits.ice_servers)

    async def resource(request: Request) -> Response:
        resource_id = request.path_params["resource_id"]
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={**PREFLIGHT, "Allow": "DELETE, OPTIONS"})
        if request.method == "PATCH":
            return no_patch(log, "whep", resource_id)
        viewer = whep.viewers.get(resource_id)
        if viewer is None or viewer.relay.live_id != request.path_params["live_id"]:
            log.info("whep: DELETE of an unknown or ended session %s…", resource_id[:8])
            return refusal(404, "not_found", "no such WHEP session (it may have ended)")
        await whep.delete(resource_id)
        return Response(status_code=200, headers=CORS)

    return [
        Route(WHEP_PATH + "/{live_id:int}", endpoint, methods=["POST", "OPTIONS"]),
        Route(WHEP_PATH + "/{live_id:int}/{resource_id}", resource,
              methods=["DELETE", "PATCH", "OPTIONS"]),
    ]  # fmt: skip
