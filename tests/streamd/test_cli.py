"""The CLI end to end, as operators script it, against the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from db.embedded import EmbeddedPostgres
from db.migrate import load_migrations
from tests.helpers import ServeProcess, cli_env, free_port, run_cli

PASSWORD = "correct horse battery staple\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir shared by this module's tests: the embedded cluster is created once."""
    return tmp_path_factory.mktemp("cli") / "var"


def _postmaster_pid(data_dir: Path) -> int | None:
    path = data_dir / "pg" / "data" / "postmaster.pid"
    return int(path.read_text().split()[0]) if path.exists() else None


def test_migrate_check_user_and_live(data_dir: Path) -> None:
    env = cli_env(data_dir)
    result = run_cli("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"applied {len(load_migrations())} migration(s)")
    assert run_cli("migrate", env=env).stdout == "applied 0 migration(s)\n"

    check = run_cli("check", env=env)
    assert check.returncode == 0, check.stderr
    assert "database: ok (PostgreSQL 18" in check.stdout
    assert "migrations: up to date" in check.stdout

    created = run_cli(
        "user", "create", "--username", "alice", "--email", "alice@example.com",
        "--password-stdin", "--role", "creator", env=env, stdin=PASSWORD,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    user = json.loads(created.stdout)
    assert user == {"id": user["id"], "username": "alice", "email": "alice@example.com",
                    "role": "creator"}  # fmt: skip

    live = run_cli("live", "create", "--user", "alice", "--title", "Friday stream", env=env)
    assert live.returncode == 0, live.stderr
    body = json.loads(live.stdout)
    assert isinstance(body["id"], int)
    assert len(body["stream_key"]) >= 32  # 192 bits, URL-safe base64
    second = json.loads(
        run_cli("live", "create", "--user", "alice", "--title", "x", env=env).stdout
    )
    assert second["stream_key"] != body["stream_key"]
    # Each command started and stopped the embedded server for itself.
    assert _postmaster_pid(data_dir) is None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["user", "create", "--username", "alice", "--email", "other@example.com",
          "--password-stdin"], PASSWORD, "username: is already taken"),
        (["user", "create", "--username", "bob", "--email", "ALICE@example.com",
          "--password-stdin"], PASSWORD, "email: is already taken"),
        (["user", "create", "--username", "b", "--email", "b@example.com",
          "--password-stdin"], PASSWORD, "username: 3-50 characters"),
        (["user", "create", "--username", "bob", "--email", "b@example.com",
          "--password-stdin"], "short\n", "password: must be 10 to 1024 characters"),
        (["live", "create", "--user", "nobody", "--title", "t"], "", "no user named 'nobody'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_changes_nothing(
    data_dir: Path, args: list[str], stdin: str, message: str
) -> None:
    env = cli_env(data_dir)
    result = run_cli(*args, env=env, stdin=stdin)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert message in lines[-1]
    assert "Traceback" not in result.stderr


def test_viewer_cannot_own_a_live(data_dir: Path) -> None:
    env = cli_env(data_dir)
    made = run_cli(
        "user", "create", "--username", "victor", "--email", "v@example.com", "--password-stdin",
        env=env, stdin=PASSWORD,
    )  # fmt: skip
    assert json.loads(made.stdout)["role"] == "viewer"
    result = run_cli("live", "create", "--user", "victor", "--title", "t", env=env)
    assert result.returncode == 1
    assert "lives need an active creator or admin" in result.stderr

    # Someone who signed up in the browser is made a creator by the operator.
    promoted = run_cli("user", "role", "--username", "victor", "--role", "creator", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout) == {
        "id": json.loads(made.stdout)["id"], "username": "victor", "role": "creator",
        "publishes_stopped": 0,
    }  # fmt: skip
    assert run_cli("live", "create", "--user", "victor", "--title", "t", env=env).returncode == 0
    missing = run_cli("user", "role", "--username", "nobody", "--role", "creator", env=env)
    assert missing.returncode == 1 and "no user named nobody" in missing.stderr
    bad = run_cli("user", "role", "--username", "victor", "--role", "root", env=env)
    assert bad.returncode == 2


def test_bad_role_is_a_usage_error(data_dir: Path) -> None:
    result = run_cli(
        "user", "create", "--username", "x1", "--email", "x@e.com", "--password-stdin",
        "--role", "root", env=cli_env(data_dir), stdin=PASSWORD,
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid choice: 'root'" in result.stderr


@pytest.fixture
def serving(data_dir: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(cli_env(data_dir))
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def test_mail_show_prints_a_pending_mail_and_the_log_keeps_no_secret(data_dir: Path) -> None:
    """No SMTP: the verification mail waits in the outbox; the operator prints it."""
    env = cli_env(data_dir)
    server = ServeProcess(env)
    try:
        server.wait_healthy()
        r = httpx.post(server.base_url + "/api/auth/register",
                       json={"username": "mia", "email": "Mia@example.com",
                             "password": "a quiet harbour at dawn"})  # fmt: skip
        assert r.status_code == 201, r.text
        shown = run_cli("mail", "show", "--to", "mia@EXAMPLE.com", env=env)
        assert shown.returncode == 0, shown.stderr
        assert "To: Mia@example.com\n" in shown.stdout
        assert "Subject: Confirm your email address for streamd\n" in shown.stdout
        assert "Kind: verify_email\n" in shown.stdout
        link = re.search(r"/verify-email\?token=([A-Za-z0-9_-]{43})", shown.stdout)
        assert link is not None, shown.stdout
        by_user = run_cli("mail", "show", "--user", "MIA", "--kind", "verify_email", env=env)
        assert by_user.returncode == 0 and by_user.stdout == shown.stdout
        r = httpx.post(server.base_url + "/api/auth/verify-email", json={"token": link.group(1)})
        assert r.status_code == 200 and r.json()["email_verified"] is True

        for args, message in (
            (["--to", "nobody@example.com"], "no mail to nobody@example.com in the outbox"),
            (["--user", "mia", "--kind", "reset_password"],
             "no reset_password mail to Mia@example.com in the outbox"),
            (["--user", "ghost"], "no user named 'ghost'"),
        ):  # fmt: skip
            missing = run_cli("mail", "show", *args, env=env)
            assert missing.returncode == 1 and missing.stdout == ""
            assert missing.stderr.strip().splitlines() == [f"streamd: {message}"]
        usage = run_cli("mail", "show", "--to", "a@b.c", "--user", "mia", env=env)
        assert usage.returncode == 2 and "not allowed with" in usage.stderr
        usage = run_cli("mail", "show", "--to", "a@b.c", "--kind", "secret", env=env)
        assert usage.returncode == 2 and "invalid choice" in usage.stderr
    finally:
        code, out, err = server.stop()
    assert code == 0, err
    assert "mail to Mia@example.com (verify_email) queued in email_outbox id" in err
    assert link.group(1) not in err + out


def test_serve_shares_its_database_and_stops_it_on_exit(data_dir: Path) -> None:
    server = ServeProcess(cli_env(data_dir))
    server.wait_healthy()
    pid = _postmaster_pid(data_dir)
    assert pid is not None
    assert httpx.get(server.base_url + "/ready").status_code == 200

    # Other commands use the running server and leave it running.
    check = run_cli("check", env=cli_env(data_dir))
    assert check.returncode == 0, check.stderr
    live = run_cli("live", "create", "--user", "alice", "--title", "while serving",
                   env=cli_env(data_dir))  # fmt: skip
    assert live.returncode == 0, live.stderr
    assert _postmaster_pid(data_dir) == pid

    # A second serve on the same data dir is refused, and the first is undisturbed.
    second = run_cli("serve", env={**server.env, "STREAMD_HTTP_PORT": str(free_port())})
    assert second.returncode == 1
    assert "another streamd serve" in second.stderr
    assert "Traceback" not in second.stderr
    assert httpx.get(server.base_url + "/ready").status_code == 200

    code, _, err = server.stop()
    assert code == 0, err
    assert "streamd is running" in err
    assert f"http://127.0.0.1:{server.http_port}/" in err
    assert _postmaster_pid(data_dir) is None  # stopped cleanly with the last holder


def test_ready_follows_the_database_while_the_process_stays_up(tmp_path: Path) -> None:
    external = EmbeddedPostgres(tmp_path / "external-pg")
    url = external.acquire()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    server = ServeProcess(cli_env(tmp_path / "var", DATABASE_URL=url))
    try:
        server.wait_healthy()
        assert httpx.get(server.base_url + "/ready").status_code == 200

        external.stop()
        r = httpx.get(server.base_url + "/ready", timeout=10)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "not_ready"
        assert "primary database unreachable" in r.json()["error"]["message"]
        assert httpx.get(server.base_url + "/health").status_code == 200

        external.start(port)
        statuses = [httpx.get(server.base_url + "/ready", timeout=10).status_code
                    for _ in range(3)]  # fmt: skip
        assert statuses[-1] == 200
        assert server.proc.poll() is None
    finally:
        code, _, err = server.stop()
        external.release()
    assert code == 0, err


def test_sigint_stops_serve_and_its_database(data_dir: Path) -> None:
    import signal

    server = ServeProcess(cli_env(data_dir))
    server.wait_healthy()
    assert _postmaster_pid(data_dir) is not None
    server.proc.send_signal(signal.SIGINT)
    code, _, err = server.stop()
    assert code == 0, err
    assert "received SIGINT, shutting down" in err
    assert _postmaster_pid(data_dir) is None


def test_a_killed_serve_leaves_nothing_that_blocks_the_next_run(data_dir: Path) -> None:
    import signal

    server = ServeProcess(cli_env(data_dir))
    server.wait_healthy()
    server.proc.send_signal(signal.SIGKILL)
    assert server.stop()[0] == -signal.SIGKILL
    # The orphaned PostgreSQL keeps running; the next command uses it, sees no other live
    # holder, and stops it when done. The serve lock died with the process.
    assert _postmaster_pid(data_dir) is not None
    check = run_cli("check", env=cli_env(data_dir))
    assert check.returncode == 0, check.stderr
    assert _postmaster_pid(data_dir) is None
    again = ServeProcess(cli_env(data_dir))
    again.wait_healthy()
    assert httpx.get(again.base_url + "/ready").status_code == 200
    assert again.stop()[0] == 0


def test_serve_takes_rtmp_publishes(data_dir: Path) -> None:
    import subprocess
    import time

    import imageio_ffmpeg

    env = cli_env(data_dir)
    key = json.loads(
        run_cli("live", "create", "--user", "alice", "--title", "rtmp", env=env).stdout
    )["stream_key"]
    server = ServeProcess(env)
    try:
        server.wait_healthy()
        rtmp_port = server.env["STREAMD_RTMP_PORT"]
        publisher = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
             "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "3",
             "-c:v", "libx264", "-g", "30", "-f", "flv",
             f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"],
            stderr=subprocess.PIPE,
        )  # fmt: skip
        seen = False
        for _ in range(60):
            text = httpx.get(server.base_url + "/metrics").text
            if "streamd_rtmp_publish_sessions 1.0" in text:
                seen = True
                break
            time.sleep(0.1)
        _, err = publisher.communicate(timeout=30)
        assert publisher.returncode == 0, err
        assert seen
        time.sleep(0.5)
        assert "streamd_rtmp_publish_sessions 0.0" in httpx.get(server.base_url + "/metrics").text
    finally:
        code, _, err = server.stop()
    assert code == 0, err
    assert f"OBS:      Server rtmp://127.0.0.1:{rtmp_port}/live" in err
    assert "started publishing" in err
    assert key not in err  # the key is never logged whole


def test_serve_publish_watch_and_record(tmp_path: Path) -> None:
    """OBS-like publish into `streamd serve`; the ffmpeg CLI plays every variant of the master
    playlist over HTTP; after the reconnect window the live ends and its recording is a video."""
    import subprocess
    import time

    import imageio_ffmpeg

    env = cli_env(tmp_path / "var", STREAMD_HLS_RECONNECT_WINDOW="2")
    made = run_cli(
        "user", "create", "--username", "olivia", "--email", "o@example.com", "--password-stdin",
        "--role", "creator", env=env, stdin=PASSWORD,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = run_cli("live", "create", "--user", "olivia", "--title", "e2e", env=env)
    live = json.loads(created.stdout)
    server = ServeProcess(env)
    try:
        server.wait_healthy()
        publish = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
             "-re", "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30",
             "-re", "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "7",
             "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-bf", "2", "-c:a", "aac",
             "-f", "flv", f"rtmp://127.0.0.1:{server.env['STREAMD_RTMP_PORT']}/live/"
             + live["stream_key"]],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert publish.returncode == 0, publish.stderr
        master_url = f"{server.base_url}/hls/{live['id']}/master.m3u8"
        master = httpx.get(master_url)
        assert master.status_code == 200
        assert master.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        variants = [line for line in master.text.splitlines() if line.endswith(".m3u8")]
        assert len(variants) == 2  # the source and the 360p rung (480p is not below 854x480)
        assert 'CODECS="avc1.64001e,mp4a.40.2"' in master.text
        for index in range(len(variants)):
            played = subprocess.run(
                ["ffmpeg", "-v", "error", "-i", master_url, "-map", f"0:v:{index}",
                 "-map", "0:a:0", "-f", "null", "-"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert played.returncode == 0, played.stderr
            assert played.stderr == ""
        for _ in range(100):  # the reconnect window (2 s) passes, then the live ends
            detail = httpx.get(f"{server.base_url}/api/lives/{live['id']}").json()
            if detail["status"] == "ended":
                break
            time.sleep(0.1)
        assert detail["status"] == "ended"
        # The recording became a video (read while serve still holds the embedded database).
        for _ in range(50):
            video = asyncio.run(_ready_video(EmbeddedPostgres(tmp_path / "var" / "pg").url()))
            if video is not None:
                break
            time.sleep(0.1)
        assert video is not None
        assert video["user_id"] == json.loads(made.stdout)["id"]
        assert video["duration"] > 5
        vod = httpx.get(server.base_url + video["hls_master_url"].split(server.base_url)[-1])
        assert vod.status_code == 200
    finally:
        code, _, err = server.stop()
    assert code == 0, err


async def _ready_video(url: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow("SELECT * FROM videos WHERE status = 'ready'")
    finally:
        await conn.close()
