"""The commands a new user types first: `make lab`, `--version`, `--help`. Real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def kit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "analytics-kit"), *args], capture_output=True, text=True, timeout=60)


def test_version():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = kit("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"analytics-kit {version}"


def test_load_help_names_the_environment_it_reads():
    result = kit("load", "--help")
    assert result.returncode == 0
    for name in ("API_KEY", "ANALYTICS_API_BASE_URL", "ANALYTICS_DATABASE"):
        assert name in result.stdout, name


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_demo_api_stops_on_a_signal_while_it_serves(sig):
    """Its handler set a threading.Event the main thread held the lock of inside wait(): once, the API outlived a
    SIGINT and two SIGTERMs (helper-118). Signals at many moments, each while requests are being served."""
    for attempt in range(6):
        server = subprocess.Popen([str(BIN / "analytics-kit"), "demo-api", "--port", "0", "--api-key", "k" * 12,
                                   "--events", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            base = server.stdout.readline().split(" serving at ")[1].split(" ")[0]
            for _ in range(attempt * 3):
                urllib.request.urlopen(f"{base}/v1/events?api_key={'k' * 12}&limit=100", timeout=10).read()
            time.sleep(0.013 * attempt)  # somewhere else in the 0.1 s poll each time
            server.send_signal(sig)
            assert server.wait(timeout=10) == 0, server.stderr.read()
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def test_demo_api_help_names_the_command_the_user_typed():
    result = kit("demo-api", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: analytics-kit demo-api ")
    assert "python -m analytics_kit.demo" not in result.stdout


def _group(pgid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # stat's 5th field, the process group
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the server's environment from /proc")
def test_make_lab_starts_as_this_user_root_included_and_passes_flags_on(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "lab-test-token"
    flags = f"--no-browser --ServerApp.ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    env = {k: v for k, v in os.environ.items() if k != "ANALYTICS_DATABASE"}
    # -o: take .venv as it is (the test runs in it), whatever the time stamps say
    lab = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab", f"ARGS={flags}"], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        status, deadline = None, time.monotonic() + 60
        while status is None and time.monotonic() < deadline and lab.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as reply:
                    status = reply.status
            except OSError:
                time.sleep(0.3)
        assert status == 200, f"JupyterLab did not answer on port {port} (uid {os.getuid()})"
        environments = []
        for pid in _group(lab.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            argv = cmdline.split(b"\0")
            # the server (python running jupyter or jupyter-lab), not make or the recipe's shell
            if any(a.endswith((b"/jupyter", b"/jupyter-lab")) for a in argv[:2]) and not argv[0].endswith((b"sh", b"make")):
                environments.append(dict(e.split("=", 1) for e in environ.decode().split("\0") if "=" in e))
        assert environments and all(e.get("ANALYTICS_DATABASE") == str(REPO / "analytics.duckdb") for e in environments)
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            out, _ = lab.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            out, _ = lab.communicate()
    assert "Running as root is not recommended" not in out
