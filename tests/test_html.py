"""The per-node HTML page: written beside every report, escaped, and opened in a real headless Chromium."""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

FAKES = Path(__file__).parent / "fakes"
P5 = Path(__file__).parent / "data" / "nvml_p5_h100.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dhc(*args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))} | {"DHC_IMDS": "off"}
    return subprocess.run([sys.executable, "-m", "dhc", *args], capture_output=True, text=True, env=base | env,
                          timeout=180)


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """A real run on a p5 with a GPU missing (recorded NVML answers): Failed, Replace."""
    tmp = tmp_path_factory.mktemp("failed")
    recording = json.loads(P5.read_text())
    recording["gpus"].pop(3)
    (tmp / "seven.json").write_text(json.dumps(recording))
    proc = dhc("run", "--instance-type", "p5.48xlarge", "--check", "stress.inventory", "--out", str(tmp / "r"),
               PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(tmp / "seven.json"), DHC_INSTANCE_ID="i-0123456789abcdef0",
               DHC_KERNEL_LOG=str(tmp / "no-kmsg"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return tmp / "r"


def test_every_run_writes_the_page_beside_the_json(failed_run):
    page = (failed_run / "report.html").read_text()
    assert "<title>dhc Failed: i-0123456789abcdef0 (ml.p5.48xlarge)</title>" in page
    assert "Failed: Replace the instance" in page
    assert "stress.inventory gpu_count: measured 7 count, expected exactly 8 count" in page
    assert "<script" not in page and "://" not in page.split("</style>")[0]  # self-contained, no network
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert csp and "default-src &#39;none&#39;" in csp.group(1) and "script-src" not in csp.group(1)


def test_text_from_checks_is_escaped(tmp_path):
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "conftest.py").write_text('pytest_plugins = ["dhc.plugin"]\n')
    (suites / "test_x.py").write_text(textwrap.dedent("""
        import pytest
        from dhc.errors import CheckIncomplete

        @pytest.mark.check("stress.inventory")
        def test_x(dhc_check):
            raise CheckIncomplete("<script>alert('owned')</script> & more")
    """))
    proc = dhc("run", "--out", str(tmp_path / "r"), DHC_SUITES=str(suites))
    assert proc.returncode == 3
    page = (tmp_path / "r" / "report.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; &amp; more" in page


def test_report_show_renders_later_and_refuses_what_is_not_a_report(failed_run, tmp_path):
    proc = dhc("report", "show", str(failed_run / "report.json"), "-o", str(tmp_path / "again.html"))
    assert proc.returncode == 0 and (tmp_path / "again.html").read_text().count("stress.inventory") >= 2
    bogus = tmp_path / "bogus.json"
    for content in ('{"schema_version": "1.0", "run": {}}', '["not", "a", "report"]', "{broken"):
        bogus.write_text(content)
        proc = dhc("report", "show", str(bogus))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and str(bogus) in proc.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
@pytest.mark.slow
def test_the_page_opens_in_headless_chromium(failed_run, tmp_path):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    url = (failed_run / "report.html").as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="verdict"' in dom.stdout and "Failed: Replace the instance" in dom.stdout
    shot = failed_run / "report.png"  # kept beside the report as the test's artefact
    proc = subprocess.run([CHROMIUM, *flags, "--window-size=1200,1400", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


XSS = '"><script>alert(1)</script><svg onload="alert(2)'


def hostile_report(failed_run, tmp_path):
    document = json.loads((failed_run / "report.json").read_text())
    row = next(c for c in document["checks"] if c["measurements"])
    row["measurements"][0]["judgement"] = XSS
    row["measurements"][0]["name"] = XSS
    row["reason"] = XSS
    document["verdict"]["reasons"][0]["message"] = XSS
    document["instance"]["node_name"]["value"] = XSS
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(document))
    return path


def test_report_show_escapes_a_payload_in_judgement_and_reason(failed_run, tmp_path):
    """The stored XSS: judgement went into SVG attributes unescaped under |safe."""
    proc = dhc("report", "show", str(hostile_report(failed_run, tmp_path)), "-o", str(tmp_path / "h.html"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "h.html").read_text()
    assert "<script" not in page and "onload=" not in page.replace("onload=&#34;", "")
    assert 'aria-label="unlimited"' in page  # an unknown judgement is drawn as the neutral kind
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown as text, escaped


def test_style_is_allowed_by_its_hash_and_nothing_else(failed_run):
    page = (failed_run / "report.html").read_text()
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1).replace("&#39;", "'")
    assert f"style-src 'sha256-{digest}'" in csp and "unsafe" not in csp


def test_a_nan_measurement_renders_as_nan_without_a_bar(failed_run, tmp_path):
    document = json.loads((failed_run / "report.json").read_text())
    row = next(c for c in document["checks"] if c["measurements"])
    row["measurements"][0].update(value=None, non_finite="nan", judgement="outside")
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(document))
    proc = dhc("report", "show", str(path), "-o", str(tmp_path / "nan.html"))
    assert proc.returncode == 0, proc.stderr
    assert '<td class="num">nan count</td>' in (tmp_path / "nan.html").read_text()


def test_report_show_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    proc = dhc("report", "show", str(fifo))
    assert proc.returncode == 2 and "is a FIFO (named pipe), not a regular file; refused" in proc.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
@pytest.mark.slow
def test_a_hostile_report_opens_in_chromium_without_running_anything(failed_run, tmp_path):
    page = tmp_path / "h.html"
    assert dhc("report", "show", str(hostile_report(failed_run, tmp_path)), "-o", str(page)).returncode == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    elements = _Elements()
    elements.feed(dom.stdout)
    assert "script" not in elements.tags and not [a for a in elements.attributes if a.startswith("on")]
    assert "Content Security Policy" not in dom.stderr, dom.stderr[-2000:]  # its own stylesheet passed the CSP
    assert "alert(1)" in dom.stdout  # the payload is there, as text


class _Elements(HTMLParser):
    """The element and attribute names of a document (a payload inside a text or an attribute is neither)."""

    def __init__(self):
        super().__init__()
        self.tags, self.attributes = set(), set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
