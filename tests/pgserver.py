"""A throwaway PostgreSQL server on 127.0.0.1 for the warehouse tests.

Debian's server binaries (installed by scripts/ensure-postgres) run a fresh cluster
in a temp folder on a free port, owned by the ``postgres`` user because initdb
refuses to run as root; it is stopped and removed afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HOW_TO = "install Debian's postgresql package (scripts/ensure-postgres does it as root) to run them"


@dataclass
class PostgresServer:
    port: int
    folder: Path
    bin: Path
    user: str | None

    @property
    def dsn(self) -> str:
        # trust auth ignores the password, but dlt insists on one
        return f"postgresql://postgres:test@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def why_not() -> str | None:
    """None if a server can be started here, else the reason it cannot."""
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        return f"no PostgreSQL server binaries on this machine; {HOW_TO}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return f"running as root without a 'postgres' user to own the cluster; {HOW_TO}"
    return None


def start() -> PostgresServer:
    """Starts a fresh cluster; raises RuntimeError with the server's own words if it cannot."""
    bin_dir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    user = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="analytics-kit-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = PostgresServer(port=port, folder=folder, bin=bin_dir, user=user)
    init = server._run("initdb", "-D", str(folder / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    started = server._run("pg_ctl", "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"), "-w", "start")
    if started.returncode:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        server.stop()
        raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()} {log[-500:]}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server._run("pg_isready", "-h", "127.0.0.1", "-p", str(port)).returncode == 0:
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("the PostgreSQL server did not become ready in 20 s")
