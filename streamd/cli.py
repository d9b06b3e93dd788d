"""``streamd`` command line: serve, worker, migrate, check, user create, live create, mail show.

Exit codes: 0 success, 1 an operational failure (database unreachable, migration failed,
invalid input), 2 a usage or configuration error. Errors print one line to stderr, no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from config.settings import ConfigError, Settings, load_settings
from db.embedded import EmbeddedPostgresError
from db.errors import DB_ERRORS_BUT_TIMEOUT
from db.migrate import MigrationError
from streamd.runtime import AlreadyServing

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]
MAIL_KINDS = (
    "verify_email",
    "reset_password",
    "registration_attempt",
    "payment_receipt",
    "refund_receipt",
)


class CliError(Exception):
    """A failure to report as one line, with exit code 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamd", description="Self-hosted live streaming.")
    parser.add_argument("--config", type=Path, help="TOML settings file (environment wins)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the platform (HTTP API and web app)")
    worker = sub.add_parser("worker", help="run VOD transcoding workers only (no HTTP, no RTMP)")
    worker.add_argument(
        "--slots", type=int, help="videos transcoded at once (default STREAMD_VOD_WORKERS or 1)"
    )
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("check", help="check config, database and migrations")

    user = sub.add_parser("user", help="manage users").add_subparsers(
        dest="user_command", required=True, metavar="ACTION"
    )
    create_user = user.add_parser("create", help="create a user")
    create_user.add_argument("--username", required=True)
    create_user.add_argument("--email", required=True)
    create_user.add_argument(
        "--password-stdin", action="store_true", required=True,
        help="read the password from the first line of standard input",
    )  # fmt: skip
    create_user.add_argument("--role", choices=("viewer", "creator", "admin"), default="viewer")
    set_role = user.add_parser(
        "role", help="change a user's role (make someone who signed up in the browser a creator)"
    )
    set_role.add_argument("--username", required=True)
    set_role.add_argument("--role", choices=("viewer", "creator", "admin"), required=True)

    live = sub.add_parser("live", help="manage lives").add_subparsers(
        dest="live_command", required=True, metavar="ACTION"
    )
    create_live = live.add_parser("create", help="create a live; prints its id and stream key")
    create_live.add_argument("--user", required=True, help="username of the owner")
    create_live.add_argument("--title", required=True)
    create_live.add_argument("--description")

    mail = sub.add_parser("mail", help="mail waiting in the outbox (no SMTP server)")
    show = mail.add_subparsers(dest="mail_command", required=True, metavar="ACTION").add_parser(
        "show", help="print the newest mail to an address or a user, with its links"
    )
    to = show.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="EMAIL", help="the recipient's address")
    to.add_argument("--user", metavar="USERNAME", help="the user whose address it is")
    show.add_argument("--kind", choices=MAIL_KINDS, help="only mail of this kind")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        env = dict(os.environ)
        if args.command not in ("serve", "worker"):
            # One-shot commands print their result; progress logs would only be noise.
            env.setdefault("STREAMD_LOG_LEVEL", "warning")
        settings = load_settings(env, config_file=args.config)
    except ConfigError as exc:
        print(f"streamd: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    from streamd.logs import configure_logging

    configure_logging(settings)
    command = _command(args)
    try:
        code = _run(command(settings, args))
    except (CliError, MigrationError, EmbeddedPostgresError, AlreadyServing, ConfigError) as exc:
        print(f"streamd: {exc}", file=sys.stderr)
        code = 1
    except DB_ERRORS_BUT_TIMEOUT as exc:  # a timeout here need not be the database's
        print(f"streamd: database error: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # not on Windows
        return asyncio.run(coro)
    result: int = uvloop.run(coro)
    return result


def _command(args: argparse.Namespace) -> Command:
    from streamd import commands

    table: dict[str, Command] = {
        "serve": commands.serve,
        "worker": commands.worker,
        "migrate": commands.migrate,
        "check": commands.check,
        "user": commands.user_create,
        "live": commands.live_create,
        "mail": commands.mail_show,
    }
    if args.command == "user" and args.user_command == "role":
        return commands.user_role
    return table[args.command]
