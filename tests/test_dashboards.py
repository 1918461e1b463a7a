"""Voila dashboards served by a real Voila process on loopback and fetched over HTTP."""
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, ROOT

DASHBOARDS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "nbs" / "apps").glob("[!0-9_]*.ipynb"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir():
    if not (ROOT / "data" / "manifest.json").exists():
        subprocess.run([BIN / "trading-data", "snapshot", "--out", ROOT / "data"], check=True, timeout=300)
    return ROOT / "data"


@pytest.mark.parametrize("notebook", DASHBOARDS)
def test_dashboard_renders_without_errors(notebook, data_dir):
    port = _free_port()
    proc = subprocess.Popen([BIN / "voila", notebook, "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
                             "--show_tracebacks=True"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, html = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=90) as r:
                    html = r.read().decode()
                break
            except OSError:
                if proc.poll() is not None: break
                time.sleep(0.5)
        assert html is not None, f"voila did not serve {notebook}"
        assert "Traceback" not in html and "There was an error" not in html, html[-3000:]
        assert "application/vnd.jupyter.widget-view+json" in html  # the widget was built and displayed
    finally:
        proc.terminate()
        proc.wait(timeout=30)
