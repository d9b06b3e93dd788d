"""Helpers shared by the benchmarks: /proc accounting, child processes, loopback sockets, FLV."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress goes to stderr; stdout is kept for the JSON result."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(report: dict[str, Any], output: Path | None) -> None:
    """The result: JSON on stdout, and in ``output`` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if output:
        output.write_text(text + "\n")


def median(values: Iterable[float]) -> float | None:
    data = list(values)
    return statistics.median(data) if data else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- /proc accounting ---


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a whole process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the comm field may contain spaces
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # fields 14 and 15 of proc(5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process, in seconds."""
    return sum(cpu_times(pid))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # a zombie has no VmRSS


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages divided among their users, so a sum over several
    processes of one program does not count its libraries once per process."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def read_chars(pid: int) -> int:
    """Bytes the process read with read(2)-family calls: for a publisher, its input file."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU-seconds of all CPUs since boot (/proc/stat): busy is user, nice,
    system, irq and softirq; steal is time the hypervisor gave to other guests."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / CLK_TCK, fields[7] / CLK_TCK


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            todo.extend(children(current))
    return pids


def wait_until(
    what: str, check: Any, timeout: float, errors: tuple[type[BaseException], ...] = (OSError,)
) -> None:
    """Poll ``check()`` until it is true (``errors`` count as not yet); exit after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(*errors):
            if check():
                return
        time.sleep(0.25)
    raise SystemExit(f"timed out waiting for {what}")


def is_listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (TCP state LISTEN in /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == wanted and parts[3] == "0A":
            return True
    return False


@dataclass(frozen=True, slots=True)
class TcpConn:
    local_port: int
    peer_port: int
    bytes_received: int


_SS_ADDR = re.compile(r"^\S+\s+\S+\s+127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)")
_SS_RECEIVED = re.compile(r"\bbytes_received:(\d+)")


def established(ports: Sequence[int]) -> list[TcpConn]:
    """Established loopback connections whose local (server) port is one of ``ports``, with the
    bytes each received (the kernel's tcp_info, read with ``ss``)."""
    wanted = set(ports)
    out = subprocess.run(
        ["ss", "-tinH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    conns: list[TcpConn] = []
    current: tuple[int, int] | None = None
    for line in out.splitlines():
        if not line[:1].isspace():
            match = _SS_ADDR.match(line)
            current = (int(match.group(1)), int(match.group(2))) if match else None
            if current is not None and current[0] not in wanted:
                current = None
        elif current is not None:
            received = _SS_RECEIVED.search(line)
            conns.append(TcpConn(current[0], current[1], int(received.group(1)) if received else 0))
            current = None
    return conns


# --- child processes ---


class Processes:
    """Children started in their own process groups, all killed by :meth:`stop_all`."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(
            list(argv), stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, start_new_session=True
        )
        self._procs.append(proc)
        return proc

    def stop(self, procs: Sequence[subprocess.Popen[Any]], grace_s: float = 5.0) -> None:
        """SIGTERM each process group, then SIGKILL what is still there after ``grace_s``."""
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)  # also reaps helpers left in the group
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc in self._procs:
                self._procs.remove(proc)

    def stop_all(self) -> None:
        self.stop(list(self._procs))


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


# --- FLV ---


@dataclass(frozen=True, slots=True)
class FlvInfo:
    size: int  # bytes of the file
    duration_s: float  # last tag timestamp minus first, plus one video frame
    video_tags: int
    audio_tags: int

    @property
    def bitrate_bps(self) -> float:
        return self.size * 8 / self.duration_s


def flv_info(path: Path, frame_rate: float = 30.0) -> FlvInfo:
    data = path.read_bytes()
    if data[:3] != b"FLV":
        raise ValueError(f"{path} is not an FLV file")
    pos = struct.unpack(">I", data[5:9])[0] + 4  # header, then PreviousTagSize0
    first: int | None = None
    last = 0
    counts = {8: 0, 9: 0}
    while pos + 11 <= len(data):
        kind = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        if kind in counts:
            counts[kind] += 1
            first = ts if first is None else first
            last = max(last, ts)
        pos += 11 + size + 4
    duration = (last - (first or 0)) / 1000 + 1 / frame_rate
    return FlvInfo(len(data), duration, counts[9], counts[8])


REPO = Path(__file__).resolve().parent.parent


def streamd_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``streamd`` run on its own data directory and loopback ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMD_", "DATABASE_"))}
    env.update(STREAMD_DATA_DIR=str(data_dir), STREAMD_HTTP_HOST="127.0.0.1",
               STREAMD_RTMP_HOST="127.0.0.1", STREAMD_HTTP_PORT=str(free_port()),
               STREAMD_RTMP_PORT=str(free_port()), **extra)  # fmt: skip
    return env


def streamd_cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    """``streamd ARGS`` (user create, live create...): its stdout; exits on failure."""
    done = subprocess.run([sys.executable, "-m", "streamd", *args], input=stdin, env=env,
                          capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"streamd {' '.join(args)}: {done.stderr}")
    return done.stdout
