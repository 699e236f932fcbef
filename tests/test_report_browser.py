"""The HTML report in a real headless browser (Debian's chromium): it renders, every image loads, and the page
fits 1280 px without horizontal scrolling. Keeps a screenshot (REPORT_SCREENSHOT_DIR, default the test's tmp dir).

chromium is installed with apt-get when missing and this runs as root; otherwise the tests skip, saying why.
CI runs them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from anytask.report import fixture, write_report

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
WIDTH = 1280

# A probe copy of the report gets this script (the real report carries no script and a CSP that forbids one):
# it marks each image ok/broken after load and records the page's scroll width.
PROBE_JS = ("<script>window.addEventListener('load',function(){var r=[];for(var i=0;i<document.images.length;i++)"
            "{var m=document.images[i];r.push(m.complete&&m.naturalWidth>0?'ok':'broken')}"
            "document.body.setAttribute('data-images',r.join(','));"
            "document.body.setAttribute('data-scroll-width',String(document.documentElement.scrollWidth));"
            "var t=document.querySelectorAll('table'),w=0;for(var j=0;j<t.length;j++){w=Math.max(w,"
            "t[j].getBoundingClientRect().right)}document.body.setAttribute('data-table-right',String(Math.round(w)))"
            "});</script>")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "apt-get install -y chromium")
    try:
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, capture_output=True, timeout=900,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"chromium is not installed and 'apt-get install -y chromium' failed: {exc}")
    exe = shutil.which("chromium")
    if not exe:
        pytest.skip("apt-get install -y chromium ran but no chromium binary is on PATH")
    return exe


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("report")
    fixture.write(str(d))
    write_report(str(d))
    return d


def _run(chromium: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *FLAGS, *args], check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")})


def test_every_image_loads_and_the_page_fits_1280px(chromium, report_dir):
    html = (report_dir / "report.html").read_text()
    assert "<script" not in html
    probe = report_dir / "probe.html"
    probe.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
                     .replace("</body>", PROBE_JS + "</body>"))
    r = _run(chromium, f"--window-size={WIDTH},2000", "--virtual-time-budget=10000", "--dump-dom",
             probe.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    images = re.search(r'data-images="([^"]*)"', r.stdout)
    assert images, "the probe script did not run: " + r.stdout[:500]
    states = images.group(1).split(",")
    assert len(states) == 7 and set(states) == {"ok"}, states
    scroll = int(re.search(r'data-scroll-width="(\d+)"', r.stdout).group(1))  # type: ignore[union-attr]
    right = int(re.search(r'data-table-right="(\d+)"', r.stdout).group(1))  # type: ignore[union-attr]
    assert scroll <= WIDTH, f"page is {scroll} px wide at a {WIDTH} px window: tables overflow"
    assert right <= WIDTH


def test_a_broken_image_is_detected(chromium, tmp_path):
    """The check above can fail: an <img> that does not decode is reported as broken."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAA'>" + PROBE_JS + "</body></html>")
    r = _run(chromium, "--window-size=800,600", "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert 'data-images="broken"' in r.stdout, r.stdout[:500]


def test_screenshot(chromium, report_dir):
    out_dir = Path(os.environ.get("REPORT_SCREENSHOT_DIR", str(report_dir)))
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "report-1280.png"
    if shot.exists():
        shot.unlink()
    r = _run(chromium, f"--window-size={WIDTH},2000", f"--screenshot={shot}", (report_dir / "report.html").as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import struct

    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (WIDTH, 2000)
    # a rendered page, not a blank one: the screenshot has many distinct colours (text, tables, charts)
    import matplotlib.image as mpimg

    img = mpimg.imread(str(shot))
    flat = (img[:, :, :3] * 255).astype("uint8").reshape(-1, 3)
    distinct = len({tuple(p) for p in flat[:: 97]})
    assert distinct > 50, f"screenshot looks blank ({distinct} colours)"
