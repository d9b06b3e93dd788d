"""What each CLI command does: short functions wiring config, database and the app."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator

import asyncpg

from config.settings import Settings
from db import lives, outbox, probe, users
from db import migrate as migrations
from ingest.gate import STREAMING_ROLES
from streamd.runtime import database_url, serve_lock
from web.accounts import AccountError, create_user
from web.tokens import load_key_set

log = logging.getLogger("streamd")


@contextlib.asynccontextmanager
async def _connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    with database_url(settings) as url:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            yield conn
        finally:
            await conn.close()


async def migrate(settings: Settings, args: argparse.Namespace) -> int:
    async with _connect(settings) as conn:
        applied = await migrations.migrate(conn)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


async def check(settings: Settings, args: argparse.Namespace) -> int:
    print("config: ok")
    load_key_set(settings)  # the JWT secret or key files are usable
    async with _connect(settings) as conn:
        version = await probe.server_version(conn)
        print(f"database: ok (PostgreSQL {version})")
        todo = await migrations.pending(conn)
    if todo:
        names = ", ".join(m.name for m in todo)
        print(f"migrations: {len(todo)} pending ({names}); run `streamd migrate`", file=sys.stderr)
        return 1
    print("migrations: up to date")
    return 0


async def user_create(settings: Settings, args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\r\n")
    async with _connect(settings) as conn:
        await _require_migrated(conn)
        try:
            row = await create_user(
                conn, username=args.username, email=args.email, password=password, role=args.role
            )
        except AccountError as exc:
            print(f"streamd: invalid {exc}", file=sys.stderr)
            return 1
    _print_json({k: row[k] for k in ("id", "username", "email", "role")})
    return 0


async def user_role(settings: Settings, args: argparse.Namespace) -> int:
    """As an admin's PATCH /api/admin/users/{id}: a role that may no longer stream has its
    publishes on air cut (NOTIFY live_control reaches the serving process)."""
    async with _connect(settings) as conn:
        await _require_migrated(conn)
        user = await users.get_by_username(conn, args.username)
        if user is None:
            print(f"streamd: no user named {_printable(args.username)}", file=sys.stderr)
            return 1
        row = await users.set_role_and_active(conn, user["id"], role=args.role, is_active=None)
        if row is None:  # deleted meanwhile
            print(f"streamd: no user named {_printable(args.username)}", file=sys.stderr)
            return 1
        stopped = 0
        if args.role not in STREAMING_ROLES:
            for live_id in await lives.live_ids_of_user(conn, user["id"]):
                await lives.request_stop(conn, live_id, "account may no longer stream")
                stopped += 1
    _print_json({"id": row["id"], "username": row["username"], "role": row["role"],
                 "publishes_stopped": stopped})  # fmt: skip
    return 0


async def live_create(settings: Settings, args: argparse.Namespace) -> int:
    async with _connect(settings) as conn:
        await _require_migrated(conn)
        owner = await users.get_by_username(conn, args.user)
        if owner is None:
            print(f"streamd: no user named {args.user!r}", file=sys.stderr)
            return 1
        if owner["role"] not in ("creator", "admin") or not owner["is_active"]:
            print(
                f"streamd: user {args.user!r} cannot own lives (role {owner['role']}, "
                f"active={owner['is_active']}); lives need an active creator or admin",
                file=sys.stderr,
            )
            return 1
        if not 1 <= len(args.title) <= 100:
            print("streamd: invalid title: 1-100 characters", file=sys.stderr)
            return 1
        row = await lives.create(
            conn, user_id=owner["id"], title=args.title, description=args.description
        )
    _print_json({"id": row["id"], "stream_key": row["stream_key"], "title": row["title"]})
    return 0


async def mail_show(settings: Settings, args: argparse.Namespace) -> int:
    """The newest outbox mail to an address, on the operator's terminal (the log never has
    it: its links are secrets)."""
    async with _connect(settings) as conn:
        await _require_migrated(conn)
        address = args.to
        if args.user is not None:
            user = await users.get_by_username(conn, args.user)
            if user is None:
                print(f"streamd: no user named {args.user!r}", file=sys.stderr)
                return 1
            address = user["email"]
        mail = await outbox.latest_for(conn, address, kind=args.kind)
    if mail is None:
        kind = f"{args.kind} " if args.kind else ""
        note = "" if settings.smtp_host is None else " (STREAMD_SMTP_HOST is set: mail is sent)"
        print(f"streamd: no {kind}mail to {_printable(address)} in the outbox{note}",
              file=sys.stderr)  # fmt: skip
        return 1
    queued = mail["created_at"].isoformat()
    head = (f"To: {mail['to_address']}\nSubject: {mail['subject']}\nKind: {mail['kind']}\n"
            f"Queued: {queued} (email_outbox id {mail['id']})\n\n")  # fmt: skip
    print(_printable(head + mail["body"]), end="" if mail["body"].endswith("\n") else "\n")
    return 0


def _printable(text: str) -> str:
    """Control characters escaped: what users typed (an address) cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else ascii(c)[1:-1] for c in text)


async def _require_migrated(conn: asyncpg.Connection) -> None:
    if await migrations.pending(conn):
        # Operators script these commands right after install: bring the schema up first.
        await migrations.migrate(conn)


async def serve(settings: Settings, args: argparse.Namespace) -> int:
    from streamd.server import run_server

    with serve_lock(settings.data_dir), database_url(settings) as url:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            applied = await migrations.migrate(conn)
        finally:
            await conn.close()
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        load_key_set(settings)  # a bad key file stops here, as one line, not in the app
        await run_server(settings, url)
    return 0


async def worker(settings: Settings, args: argparse.Namespace) -> int:
    """VOD workers alone (no HTTP, no RTMP): a worker node beside web nodes on one database."""
    import asyncio
    import signal

    from prometheus_client import CollectorRegistry

    from streamd.media import build_storage
    from streamd.resources import database_pools
    from streamd.worker import running_worker

    slots = args.slots if args.slots is not None else max(1, settings.vod_workers)
    with database_url(settings) as url:
        async with _connect(settings) as conn:
            await _require_migrated(conn)
        async with database_pools(settings, url) as db:
            storage = build_storage(settings, CollectorRegistry())
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            async with running_worker(settings, url, db.primary, storage, slots):
                log.info("streamd worker: %d transcode slot(s); Ctrl-C to stop", slots)
                await stop.wait()
    return 0


def _print_json(value: object) -> None:
    print(json.dumps(value, default=str), flush=True)
