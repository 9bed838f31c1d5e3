"""torchquantx.report: the text table and the self-contained HTML page, rendered in headless Chromium."""
from __future__ import annotations

import base64
import io
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from torchquantx.analysis import Analysis, FloatOp, LayerStats, Sensitivity
from torchquantx.report import format_table, render_report, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _histogram(lo: float, hi: float, bins: int = 64):
    """A bell-shaped histogram over [lo, hi]."""
    mid, width = (lo + hi) / 2, (hi - lo) / 6
    counts = [1000.0 * math.exp(-((lo + (i + 0.5) * (hi - lo) / bins - mid) / width) ** 2) for i in range(bins)]
    return (counts, lo, hi)


def sample_analysis() -> Analysis:
    """A hand-built analysis: three layers (one badly clipped, one exact), a float op, a ranking."""
    layers = [
        LayerStats("input 'x'", "input", "_tqx_obs_0", 38.2, 0.9999, math.inf, 38.2, 38.2, (-2.0, 2.5),
                   (-2.0, 2.5), 0.0, _histogram(-2.0, 2.5)),
        LayerStats("layers.0.conv1", "aten::conv2d", "_tqx_obs_1", 7.5, 0.91, 30.1, 7.9, 8.0, (0.0, 0.5),
                   (0.0, 6.0), 0.231, _histogram(0.0, 6.0)),
        LayerStats("classifier <fc>", "aten::linear", "_tqx_obs_2", 24.0, 0.998, 31.0, 25.5, 33.0, (-8.0, 9.0),
                   (-8.5, 9.5), 0.0004, ([], 0.0, 0.0)),
    ]
    float_ops = [FloatOp("head.norm", "aten::layer_norm", "no int8 kernel", 2, 0.042)]
    sensitivity = [Sensitivity("layers.0.conv1", 8.1, 23.9, 16.4), Sensitivity("classifier <fc>", 24.5, 7.6, 0.1),
                   Sensitivity("input 'x'", 38.0, 7.5, 0.0)]
    return Analysis("output SQNR (dB)", math.inf, 7.5, layers, float_ops, sensitivity,
                    notes=["layers.0.conv1 clips 23% of its values"])


class _Page(HTMLParser):
    """Collects table rows by class and image sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict = {}
        self.images: list = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class"):
            self.rows[a["class"]] = self.rows.get(a["class"], 0) + 1
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("script", "link") or (tag != "img" and any(k in ("src", "href") for k in a)):
            raise AssertionError(f"the page should reference nothing outside itself, found <{tag} {attrs}>")


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _decoded_pngs(images):
    from PIL import Image
    out = []
    for src in images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        img = Image.open(io.BytesIO(data))
        img.verify()
        out.append(img)
    return out


def test_text_table_lists_every_layer_float_op_and_rank():
    text = format_table(sample_analysis())
    assert "output SQNR (dB): float inf, int8 7.5" in text
    lines = text.splitlines()
    assert any(l.startswith("layers.0.conv1") and "7.5" in l and "23.100%" in l and "[0, 0.5]" in l for l in lines)
    assert any(l.startswith("input 'x'") and " inf " in l for l in lines)   # weight-only SQNR of an input
    assert "head.norm" in text and "no int8 kernel" in text
    ranking = text[text.index("sensitivity"):].splitlines()[2:]
    assert ranking[0].startswith("layers.0.conv1") and ranking[0].endswith("+16.4")
    assert "note: layers.0.conv1 clips 23%" in text


def test_page_holds_tables_and_embedded_pngs(tmp_path):
    analysis = sample_analysis()
    path = str(tmp_path / "report.html")
    assert write_report(analysis, path, title="resnet <int8>") == path
    text = open(path, encoding="utf-8").read()
    assert "<title>resnet &lt;int8&gt;</title>" in text      # escaped
    assert "classifier &lt;fc&gt;" in text
    page = _parse(text)
    assert page.rows == {"layer": 3, "float-op": 1, "sensitivity": 3}
    pngs = _decoded_pngs(page.images)
    assert len(pngs) == 1 + 2          # SQNR bars; histograms of the two layers that have one
    assert os.listdir(tmp_path) == ["report.html"]              # no temporary file left
    assert 'class="bad">7.5<' in text                            # low SQNR marked


def test_page_without_histograms_or_sensitivity():
    a = sample_analysis()
    a.sensitivity = []
    text = render_report(a, histograms=False)
    page = _parse(text)
    assert page.rows == {"layer": 3, "float-op": 1}
    assert len(page.images) == 1 and "Not computed" in text and "Activation histograms" not in text


def test_write_report_rejects_other_objects_and_leaves_nothing(tmp_path):
    with pytest.raises(TypeError, match="should be a torchquantx.analysis.Analysis, got dict"):
        write_report({}, str(tmp_path / "r.html"))
    with pytest.raises(FileNotFoundError):
        write_report(sample_analysis(), str(tmp_path / "missing" / "r.html"))
    assert os.listdir(tmp_path) == []


def _chromium(tmp_path, *args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install-deps.sh installs it)")
def test_page_renders_in_headless_chromium(tmp_path):
    from PIL import Image, ImageStat
    path = tmp_path / "report.html"
    write_report(sample_analysis(), str(path), title="chromium check")
    dom = _chromium(tmp_path, "--dump-dom", path.as_uri())
    page = _parse(dom)                              # the DOM Chromium built, not our text
    assert page.rows == {"layer": 3, "float-op": 1, "sensitivity": 3}
    assert len(_decoded_pngs(page.images)) == 3
    assert re.search(r"<td class=\"name\">layers\.0\.conv1</td>", dom)

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", path.as_uri())
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1600)
    stat = ImageStat.Stat(img)
    assert max(stat.stddev) > 20, stat.stddev       # not blank: text, table borders and plots
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # anti-aliased text and plot colours, not a flat page
