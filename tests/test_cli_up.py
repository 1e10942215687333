"""``inkq up``: the whole service from one command, stopped cleanly with nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import psutil
import pytest

from inkq.embedded_redis import free_port
from tests.conftest import ROOT, data_url, ready, wait_until


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_serves_and_stops_cleanly(tmp_path, clear_pngs, stop_signal):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(INKQ_DATA_DIR=str(tmp_path / "data"), INKQ_HEARTBEAT_S="0.5")
    log = open(tmp_path / "up.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "inkq.cli", "up", "--port", str(port), "--workers", "1"],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        announced = f"inkq is up: {url}"
        wait_until(lambda: announced in (tmp_path / "up.log").read_text() or proc.poll() is not None,
                   120, "inkq up to announce its URL")
        assert ready(url)
        assert proc.poll() is None, (tmp_path / "up.log").read_text()
        resp = httpx.post(f"{url}/predict", json={"image": data_url(clear_pngs[0][0])}, timeout=10)
        assert resp.status_code == 200 and len(resp.json()["top5"]) == 5
        family = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "redis-server" in names and "worker" in names and " api" in names
        assert (tmp_path / "data" / "redis").is_dir()  # the embedded Redis keeps its data locally
    finally:
        proc.send_signal(stop_signal)
        code = proc.wait(60)
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, f"stray processes: {[p.cmdline() for p in alive]}"
