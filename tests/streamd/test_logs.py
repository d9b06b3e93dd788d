"""streamd.logs: what a client controls cannot forge, split or colour a log line.

Requests and RTMP publishes go through the real app and the real RTMP server with logging
configured as ``streamd serve`` configures it; the test reads the text those handlers wrote.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry

from config.settings import Settings
from db import lives, users
from ingest.gate import PublishGate
from ingest.metrics import IngestMetrics
from ingest.rtmp.client import RtmpClient
from ingest.server import RtmpLimits, RtmpServer
from streamd.logs import TextFormatter, configure_logging
from tests.app_helpers import web_app

# A request path that, written raw, ends the access line and forges a WARNING of its own, then
# clears the terminal of whoever tails the log; %00 and DEL ride along. Under /api: an unknown
# path there is a 404 (elsewhere a GET is a page of the web app).
FORGED = "2026-01-01 00:00:00,000 WARNING streamd.access: forged"
EVIL_PATH = "/api/x%0a" + FORGED.replace(" ", "%20") + "%1b[2J%00%7f%c2%85end"
EVIL_DECODED = "/api/x\n" + FORGED + "\x1b[2J\x00\x7f\x85end"
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # all but \t and \n


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], io.StringIO]]:
    """``configure(format)``: logging as ``serve`` sets it up, into a buffer; undone after."""
    root = logging.getLogger()
    level = root.level
    uvicorn_state = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
                     for n in ("uvicorn", "uvicorn.error", "uvicorn.access")}  # fmt: skip
    added: list[logging.Handler] = []

    def configure(log_format: str) -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buffer)
        configure_logging(Settings(log_format=log_format))  # type: ignore[arg-type]
        added.extend(root.handlers)
        return buffer

    yield configure
    for handler in added:
        root.removeHandler(handler)
    root.setLevel(level)
    for name, (handlers, propagate) in uvicorn_state.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


async def _request_evil_path(database_url: str) -> None:
    async with (
        web_app(Settings(jwt_secret="s" * 40), database_url) as app,
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get(EVIL_PATH)
    assert r.status_code == 404


async def test_the_text_access_log_escapes_control_characters(
    database_url: str, configured: Callable[[str], io.StringIO]
) -> None:
    out = configured("text")
    await _request_evil_path(database_url)
    text = out.getvalue()
    assert not RAW_CONTROLS.search(text)
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith(FORGED)]  # no forged record
    (access,) = [line for line in lines if "streamd.access" in line and "GET /api/x" in line]
    assert "GET /api/x\\n" + FORGED + "\\x1b[2J\\x00\\x7f\\x85end 404 " in access


async def test_the_json_access_log_keeps_one_object_per_line(
    database_url: str, configured: Callable[[str], io.StringIO]
) -> None:
    out = configured("json")
    await _request_evil_path(database_url)
    text = out.getvalue()
    assert not RAW_CONTROLS.search(text)
    entries = [json.loads(line) for line in text.splitlines()]
    (access,) = [e for e in entries if e["logger"] == "streamd.access"]
    assert access["path"] == EVIL_DECODED  # exact, once decoded
    assert access["message"].startswith("GET " + EVIL_DECODED + " 404 ")


async def test_rtmp_names_cannot_forge_log_lines(
    database_url: str, configured: Callable[[str], io.StringIO]
) -> None:
    out = configured("text")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    owner = await users.create(pool, username="streamer", email="s@example.com",
                               password_hash="x", role="creator")  # fmt: skip
    await lives.create(pool, user_id=owner["id"], title="a live")
    gate = PublishGate(pool, database_url, "live")
    await gate.open()
    limits = RtmpLimits(max_connections=5, handshake_timeout=5, idle_timeout=5)
    server = RtmpServer(gate, IngestMetrics(CollectorRegistry()), limits)
    try:
        await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports()[0])
        client = RtmpClient()
        writer.write(client.data_to_send())
        while not client.handshake.complete:
            client.receive_data(await asyncio.wait_for(reader.read(65536), 5))
        # The log shows the first characters of a refused key: make them a line break.
        key = "\n\x1b[3" + "k" * 20
        client.connect("live")
        client.publish_sequence(key)
        client.publish(1, key)
        writer.write(client.data_to_send())
        while await asyncio.wait_for(reader.read(65536), 5):  # until the server closes
            pass
        writer.close()
    finally:
        await server.close()
        await gate.close()
        await pool.close()
    text = out.getvalue()
    assert not RAW_CONTROLS.search(text)
    (refused,) = [line for line in text.splitlines() if "refused (unknown_key)" in line]
    assert "key \\n\\x1b[3" in refused


def test_tracebacks_keep_their_lines_but_none_can_pass_for_a_record() -> None:
    formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
    try:
        raise ValueError("bad input\n" + FORGED + "\x1b[2J")
    except ValueError:
        record = logging.LogRecord("streamd", logging.ERROR, __file__, 1, "failed on %s",
                                   ("a\rb\u2028c",), sys.exc_info())  # fmt: skip
    first, *rest = formatter.format(record).split("\n")
    assert first == "ERROR streamd: failed on a\\rb\\u2028c"
    assert rest and all(line.startswith("  ") for line in rest)
    assert rest[0] == "  Traceback (most recent call last):"
    assert "  " + FORGED + "\\x1b[2J" in rest


def test_bidirectional_and_invisible_characters_are_shown_not_obeyed() -> None:
    """A right-to-left override (or an isolate, a zero-width space) reorders or hides what a
    terminal shows of the rest of the line: "user alice\u202e..." could read as another name."""
    formatter = TextFormatter("%(message)s")
    record = logging.LogRecord("streamd", logging.INFO, __file__, 1, "user %s logged in",
                               ("eve\u202etxt.exe\u2066x\u2069\u200b\ufeff",), None)  # fmt: skip
    assert formatter.format(record) == (
        "user eve\\u202etxt.exe\\u2066x\\u2069\\u200b\\ufeff logged in"
    )
