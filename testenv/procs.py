"""Child processes of the control plane: started in their own process group, logged to files,
and always stopped (SIGTERM to the group, then SIGKILL), so no test run leaks a server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        data = path.read_bytes()[-64_000:]
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class ManagedProcess:
    """One long-running child whose stdout+stderr go to <log_dir>/<name>.log."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None, pid_file: Path | None = None) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_dir / f"{name}.log"
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.pid_file = pid_file  # every pid is appended, so a later run can reap leftovers
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> "ManagedProcess":
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=str(self.cwd) if self.cwd else None,
                start_new_session=True,  # own process group: killpg reaches any children too
            )
        self.started_at = time.monotonic()
        if self.pid_file is not None:
            with open(self.pid_file, "a") as f:
                f.write(f"{self.proc.pid}\n")
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self.proc.returncode}; last log lines "
                f"({self.log_path}):\n{tail(self.log_path)}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, wait up to `timeout`, then SIGKILL it."""
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # == pgid because of start_new_session
        if proc.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(pgid, signal.SIGKILL)  # also reaps stragglers left in the group
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, alive={self.alive()})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mentions(pid: int, needle: str) -> bool:
    """Whether /proc/<pid> cmdline or environment mentions `needle` (guards against pid reuse)."""
    for part in ("cmdline", "environ"):
        try:
            if needle.encode() in Path(f"/proc/{pid}/{part}").read_bytes():
                return True
        except OSError:
            pass
    return False


def reap_stale_runs(root: Path, prefix: str, max_age_s: float = 86400) -> list[Path]:
    """Kill processes left by runs whose owning (Python) process died without cleanup.

    A run dir holds `owner` (pid of the process that started it) and `pids` (its children).
    Only children of dead owners are killed, and only if their command line or environment
    still names that run dir, so concurrent runs of other users are never touched.
    """
    reaped = []
    for run in sorted(root.glob(prefix + "*")):
        old = time.time() - run.stat().st_mtime > max_age_s
        try:
            owner = int((run / "owner").read_text().strip())
        except (OSError, ValueError):
            if old and (run / "keep").exists():  # logs kept after a failure, reaped earlier: expire them
                shutil.rmtree(run, ignore_errors=True)
            continue
        if _pid_alive(owner):  # running (or its pid reused): leave it alone
            continue
        for line in (run / "pids").read_text().split() if (run / "pids").exists() else []:
            pid = int(line)
            if _pid_alive(pid) and _mentions(pid, str(run)):
                _signal_group(pid, signal.SIGKILL)
        reaped.append(run)
        shutil.rmtree(run / "etcd-data", ignore_errors=True)
        if not (run / "keep").exists() or old:
            shutil.rmtree(run, ignore_errors=True)
        else:
            (run / "owner").unlink(missing_ok=True)  # reaped: keep the logs, do not report it again
    return reaped


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "condition",
             check: Callable[[], None] | None = None) -> T:
    """Poll `predicate()` until it returns a truthy value; call `check()` each round (may raise)."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        if check is not None:
            check()
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
