"""Helpers for tests that run streamd the way an operator does: as a command."""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def run_cli(
    *args: str, env: dict[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m streamd ARGS`` the way an operator's script would."""
    return subprocess.run(
        [sys.executable, "-m", "streamd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMD_", "DATABASE_"))}
    env["STREAMD_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files in ``directory``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """A ``streamd serve`` child process on free loopback ports."""

    def __init__(self, env: dict[str, str]) -> None:
        self.http_port = free_port()
        self.env = dict(env)
        self.env.setdefault("STREAMD_HTTP_HOST", "127.0.0.1")
        self.env.setdefault("STREAMD_RTMP_HOST", "127.0.0.1")
        self.env["STREAMD_HTTP_PORT"] = str(self.http_port)
        self.env.setdefault("STREAMD_RTMP_PORT", str(free_port()))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamd", "serve"],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        scheme = "https" if self.env.get("STREAMD_HTTP_TLS_CERT") else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.http_port}"
        cert = self.env.get("STREAMD_HTTP_TLS_CERT")
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=cert) if cert else True
        )

    def wait_healthy(self, timeout: float = 60) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise AssertionError(f"serve exited with {self.proc.returncode}: {err}")
            try:
                answer = httpx.get(self.base_url + "/health", timeout=1, verify=self.verify)
                if answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not become healthy in time")

    def stop(self, timeout: float = 30) -> tuple[int, str, str]:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[tuple[ServeProcess, list[str]]]:
    """``streamd serve`` while the block runs, healthy, with its log lines collected as they
    come (so a chatty server never blocks on a full pipe); terminated and reaped after."""
    server = ServeProcess(env)
    log: list[str] = []
    assert server.proc.stderr is not None
    reader = threading.Thread(target=lambda: log.extend(server.proc.stderr or []), daemon=True)
    reader.start()
    try:
        server.wait_healthy()
        yield server, log
    finally:
        if server.proc.poll() is None:
            server.proc.terminate()
        server.proc.wait(timeout=60)
        reader.join(timeout=10)
        for pipe in (server.proc.stdout, server.proc.stderr):
            if pipe is not None:
                pipe.close()
