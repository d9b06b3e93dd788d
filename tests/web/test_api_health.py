"""``GET /api/lives/{id}/health``: the studio page's stream health, written by the packager
process (db.live_health), read by any API process."""

from __future__ import annotations

import json
from datetime import datetime

from db import live_health, lives
from tests.web.api_helpers import Api, MakeApi

SAMPLE = {
    "bitrate_kbps": 4660.2, "video_kbps": 4500.0, "audio_kbps": 160.2, "fps": 29.97,
    "keyframe_interval_s": 2.0, "audio": True, "video_codec": "h264", "width": 1920,
    "height": 1080, "rungs": ["480p", "360p"], "rungs_shed": ["720p"],
}  # fmt: skip


async def test_samples_oldest_first_with_viewer_counts(make_api: MakeApi) -> None:
    api = await make_api(health_interval=2)
    owner = await api.make_user("creator")
    live = await api.create_live(owner)
    url = f"/api/lives/{live['id']}/health"
    r = await api.client.get(url, headers=owner.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"live_id": live["id"], "status": "offline", "viewer_count": 0,
                        "interval": 2.0, "samples": []}  # fmt: skip

    await lives.mark_live(api.pool, live["id"])
    # Viewers as players make them: heartbeats, counted by the chat hub's report into
    # lives.viewer_count. (Writing the column directly raced the hub's own periodic report,
    # which sets a live without reported viewers back to 0.)
    hub = api.app.state.chat
    players = 0
    for viewers, fps in ((3, 30.0), (5, None)):
        while players < viewers:
            players += 1
            address = f"198.51.100.{players}"
            player_id, _ = hub.heartbeat(live["id"], None, address)  # issued
            hub.heartbeat(live["id"], player_id, address)  # counted
        await hub.report_once()
        sample = json.dumps({**SAMPLE, "fps": fps})
        assert await live_health.record(api.pool, [live["id"]], [sample]) == 1
    # Older than 10 minutes: not shown.
    await api.pool.execute(
        """INSERT INTO live_health_samples (live_id, at, sample)
           VALUES ($1, now() - interval '11 minutes', $2::jsonb)""",
        live["id"], json.dumps(SAMPLE),
    )  # fmt: skip
    body = (await api.client.get(url, headers=owner.auth)).json()
    assert (body["status"], body["viewer_count"], body["interval"]) == ("live", 5, 2.0)
    samples = body["samples"]
    assert [s["viewer_count"] for s in samples] == [3, 5]
    assert [s["fps"] for s in samples] == [30.0, None]
    first = dict(samples[0])
    at = datetime.fromisoformat(first.pop("at"))
    assert at.tzinfo is not None
    assert first == {**SAMPLE, "fps": 30.0, "viewer_count": 3}
    assert samples[0]["at"] < samples[1]["at"]


async def test_who_may_read_it(api: Api) -> None:
    owner = await api.make_user("creator")
    admin = await api.make_user("admin")
    stranger = await api.make_user("creator")
    viewer = await api.make_user("viewer")
    live = await api.create_live(owner)
    url = f"/api/lives/{live['id']}/health"
    assert (await api.client.get(url, headers=admin.auth)).status_code == 200
    for user in (stranger, viewer):
        r = await api.client.get(url, headers=user.auth)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
    assert (await api.client.get(url)).status_code == 401
    r = await api.client.get(f"/api/lives/{live['id'] + 1000}/health", headers=owner.auth)
    assert r.status_code == 404
    # The owner deactivated: the live is gone for everyone but admins.
    await api.pool.execute("UPDATE users SET is_active = false WHERE id = $1", owner.id)
    assert (await api.client.get(url, headers=stranger.auth)).status_code == 404
    assert (await api.client.get(url, headers=admin.auth)).status_code == 200


async def test_in_the_openapi_document(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    operation = doc["paths"]["/api/lives/{live_id}/health"]["get"]
    assert operation["operationId"] == "get_health"
    assert {"200", "401", "403", "404"} <= set(operation["responses"])
    schema = doc["components"]["schemas"]["HealthSampleOut"]
    assert set(SAMPLE) | {"at", "viewer_count"} == set(schema["properties"])
