"""The demo's HTML report in a real browser: headless Chromium loads every image, and a screenshot is kept.

Skips where Chromium is not installed (`make test` installs Debian's package when it runs as root).
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from unetkit.demo import run_demo
from unetkit.io import read_image
from unetkit.synthetic import write_dataset

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium)")

# Appended to a copy of the page: once everything has loaded, each <img>'s natural width goes into the DOM,
# where --dump-dom prints it. A broken image has naturalWidth 0.
IMAGE_CHECK = """<script>
addEventListener("load", () => {
  const found = [...document.images].map(img => ({src: img.getAttribute("src"), width: img.naturalWidth}));
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify(found);
  document.body.append(out);
});
</script>"""


def chromium(tmp_path, *args: str) -> str:
    """Run headless Chromium (root in a container: no sandbox; no GPU); returns what it printed."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    done = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """report.html from `make demo`'s code path (`run_demo`): five 64 x 64 sections, a moment of training."""
    root = tmp_path_factory.mktemp("demo")
    data = write_dataset(root / "data", count=5, shape=(64, 64))
    return Path(run_demo(root / "out", data=data, minutes=0.005, preset="tiny")["report"])


def test_every_image_of_the_report_loads_in_chromium(report, tmp_path):
    source = report.read_text()
    check = report.with_name("image_check.html")  # a copy beside the page: same relative image paths
    check.write_text(source.replace("</body>", IMAGE_CHECK + "</body>"))
    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", check.as_uri())
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.S)
    assert found, "the check script did not run"
    images = json.loads(html.unescape(found.group(1)))
    sources = re.findall(r'<img src="([^"]+)"', source)
    assert len(sources) >= 4  # error bars, threshold sweep, training curves, an overlay per held-out image
    assert [image["src"] for image in images] == sources
    assert all(image["width"] > 0 for image in images), [image["src"] for image in images if not image["width"]]


def test_chromium_screenshot_of_the_report(report, tmp_path):
    shot = tmp_path / "report.png"
    chromium(tmp_path, "--window-size=1000,1600", f"--screenshot={shot}", report.as_uri())
    pixels = read_image(shot)
    assert pixels.shape[1:] == (1600, 1000)
    inked = pixels[:3].min(axis=0) < 128  # text, table lines and figures on the white page
    assert 0.01 < inked.mean() < 0.5, inked.mean()
