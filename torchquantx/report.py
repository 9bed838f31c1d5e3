"""The analysis report: a self-contained HTML page (tables and embedded matplotlib PNGs) and a text table.

    analysis = torchquantx.analyze(model, loader)
    torchquantx.report.write_report(analysis, "report.html")   # or: torchquantx analyze ... --report report.html
    print(torchquantx.report.format_table(analysis))

The page references nothing outside itself (no scripts, fonts or links), so it can be mailed or
archived as one file. Plots are drawn with matplotlib's Agg canvas directly: no pyplot, so the
caller's matplotlib backend and figure state are left alone.
"""
from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Iterable, List, Optional, Sequence

from ._files import atomic_write
from .analysis import Analysis, LayerStats

# A layer whose SQNR is below these (dB) is marked in the tables: int8 noise at 20 dB is 1% of the
# signal power, at 10 dB 10%.
WARN_DB, BAD_DB = 20.0, 10.0
CLIP_WARN = 0.01  # a chosen range that clips more than 1% of the analysed values is marked

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #eee; } td.name, td.text { text-align: left; font-family: monospace; }
td.warn { background: #fff3c4; } td.bad { background: #ffc9c9; }
.summary td { text-align: left; } .note { color: #555; }
.hists { display: flex; flex-wrap: wrap; gap: 0.5em; } .hists figure { margin: 0; }
figcaption { font-family: monospace; font-size: 0.8em; }
"""


def _db(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.1f}"


def _range(r: Sequence[float]) -> str:
    return f"[{r[0]:.4g}, {r[1]:.4g}]"


def _sqnr_class(value: float) -> str:
    if math.isnan(value) or value < BAD_DB:
        return "bad"
    return "warn" if value < WARN_DB else ""


def format_table(analysis: Analysis) -> str:
    """The per-layer table, float ops and sensitivity ranking as plain text (what `torchquantx analyze` prints)."""
    a = analysis
    lines = [f"{a.metric_name}: float {a.float_metric:.4g}, int8 {a.int8_metric:.4g}", ""]
    header = ("layer", "op", "SQNR", "cosine", "W-only", "A-only", "local", "chosen range", "observed", "clipped")
    rows = [(l.name, l.op, _db(l.sqnr), f"{l.cosine:.4f}", _db(l.weight_only_sqnr), _db(l.activation_only_sqnr),
             _db(l.local_sqnr), _range(l.range), _range(l.observed), f"{100 * l.clipped:.3f}%") for l in a.layers]
    lines += _columns(header, rows, left=2)
    lines.append("(SQNR columns in dB: full int8, weights only, activations only, this tensor's own rounding)")
    if a.float_ops:
        lines += ["", "ops left in float:"]
        lines += _columns(("op", "kind", "reason", "q/dq", "boundary ms"),
                          [(f.name, f.op, f.reason, str(f.boundaries), f"{f.boundary_ms:.3f}") for f in a.float_ops],
                          left=3)
    if a.sensitivity:
        lines += ["", f"sensitivity ({a.metric_name}; most sensitive first):"]
        lines += _columns(("layer", "only this int8", "all but this int8", "gain"),
                          [(s.name, f"{s.quantized_alone:.4g}", f"{s.float_alone:.4g}", f"{s.gain:+.4g}")
                           for s in a.sensitivity], left=1)
    lines += [f"note: {n}" for n in a.notes]
    return "\n".join(lines)


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> List[str]:
    """Aligned text columns; the first `left` columns are left-aligned, the rest right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header)] + [line(r) for r in rows]


def _figure(width: float, height: float, dpi: int) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("torchquantx.report draws its plots with matplotlib, which is not installed (Debian: "
                          "apt-get install python3-matplotlib; scripts/install-deps.sh installs it)") from e
    return Figure(figsize=(width, height), dpi=dpi)


def _png(fig: Any) -> str:
    """The figure as a data: URI of a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _sqnr_plot(layers: Sequence[LayerStats]) -> str:
    n = len(layers)
    fig = _figure(9, 1.2 + 0.32 * n, 90)
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(n))
    cap = _finite_cap([v for l in layers for v in (l.sqnr, l.weight_only_sqnr, l.activation_only_sqnr)])
    series = (("int8", [l.sqnr for l in layers], "#d62728", -0.27),
              ("weights only", [l.weight_only_sqnr for l in layers], "#1f77b4", 0.0),
              ("activations only", [l.activation_only_sqnr for l in layers], "#2ca02c", 0.27))
    for label, values, color, offset in series:
        ax.barh([y + offset for y in ys], [_clip(v, cap) for v in values], height=0.26, color=color, label=label)
    ax.set_yticks(ys)
    ax.set_yticklabels([l.name for l in layers], fontsize=8, family="monospace")
    ax.invert_yaxis()
    ax.axvline(WARN_DB, color="#888", linestyle=":", linewidth=1)
    ax.set_xlabel("SQNR vs float (dB, higher is better; infinite values drawn at the longest finite bar)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _finite_cap(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else 1.0


def _clip(value: float, cap: float) -> float:
    if math.isnan(value):
        return 0.0
    return max(min(value, cap), 0.0) if math.isinf(value) else value


def _histogram_plot(layer: LayerStats) -> Optional[str]:
    counts, lo, hi = layer.histogram
    if not counts or not hi > lo:
        return None
    fig = _figure(4.2, 2.4, 80)
    ax = fig.add_subplot(1, 1, 1)
    width = (hi - lo) / len(counts)
    ax.bar([lo + (i + 0.5) * width for i in range(len(counts))], counts, width=width, color="#4c72b0", linewidth=0)
    if any(c > 0 for c in counts):
        ax.set_yscale("log")
    ax.axvspan(layer.observed[0], layer.observed[1], color="#999", alpha=0.12, label="observed")
    for x in layer.range:
        ax.axvline(x, color="#d62728", linewidth=1.2)
    ax.plot([], [], color="#d62728", label="chosen range")
    ax.set_title(f"{layer.name}  (clipped {100 * layer.clipped:.3f}%)", fontsize=8, family="monospace")
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    return _png(fig)


def _td(text: str, cls: str = "") -> str:
    return f'<td class="{cls}">{html.escape(text)}</td>' if cls else f"<td>{html.escape(text)}</td>"


def _table(header: Sequence[str], rows: Sequence[str], cls: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(rows) + "\n</tbody></table>"


def render_report(analysis: Analysis, *, title: Optional[str] = None, histograms: bool = True) -> str:
    """The report page as an HTML string (see write_report)."""
    a = analysis
    title = title or "torchquantx analysis"
    parts: List[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<table class="summary"><tbody>',
        f"<tr><th>metric</th><td>{html.escape(a.metric_name)}</td></tr>",
        f"<tr><th>float model</th><td>{a.float_metric:.6g}</td></tr>",
        f"<tr><th>int8 model</th><td>{a.int8_metric:.6g}</td></tr>",
        f"<tr><th>quantized activations</th><td>{len(a.layers)}</td></tr>",
        f"<tr><th>ops left in float</th><td>{len(a.float_ops)}</td></tr>",
        "</tbody></table>",
    ]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in a.notes]

    parts.append(f'<h2 id="layers">Per-layer error ({len(a.layers)} quantized activations)</h2>')
    parts.append("<p>SQNR (dB) of each activation, float model vs int8: with everything quantized, weights only, "
                 "activations only, and this tensor's own rounding and clipping alone. Cells below "
                 f"{WARN_DB:g} dB are yellow, below {BAD_DB:g} dB red; a range clipping more than "
                 f"{100 * CLIP_WARN:g}% of the analysed values is yellow.</p>")
    rows = [f'<tr class="layer">{_td(l.name, "name")}{_td(l.op, "text")}{_td(_db(l.sqnr), _sqnr_class(l.sqnr))}'
            f"{_td(f'{l.cosine:.4f}')}{_td(_db(l.weight_only_sqnr), _sqnr_class(l.weight_only_sqnr))}"
            f"{_td(_db(l.activation_only_sqnr), _sqnr_class(l.activation_only_sqnr))}"
            f"{_td(_db(l.local_sqnr), _sqnr_class(l.local_sqnr))}{_td(_range(l.range))}{_td(_range(l.observed))}"
            f"{_td(f'{100 * l.clipped:.3f}%', 'warn' if l.clipped > CLIP_WARN else '')}</tr>" for l in a.layers]
    parts.append(_table(("layer", "op", "SQNR", "cosine", "weight-only SQNR", "activation-only SQNR", "local SQNR",
                         "chosen range", "observed range", "clipped"), rows, "layers"))
    if a.layers:
        parts.append(f'<p><img id="sqnr-plot" alt="per-layer SQNR" src="{_sqnr_plot(a.layers)}"></p>')

    parts.append(f'<h2 id="float-ops">Ops left in float ({len(a.float_ops)})</h2>')
    if a.float_ops:
        total = sum(f.boundary_ms for f in a.float_ops)
        parts.append(f"<p>Each runs between dequantize and quantize ops; those boundaries cost {total:.3f} ms "
                     "per batch in all.</p>")
        rows = [f'<tr class="float-op">{_td(f.name, "name")}{_td(f.op, "text")}{_td(f.reason, "text")}'
                f"{_td(str(f.boundaries))}{_td(f'{f.boundary_ms:.3f}')}</tr>" for f in a.float_ops]
        parts.append(_table(("op", "kind", "reason", "quantize/dequantize ops", "boundary ms"), rows, "float-ops"))
    else:
        parts.append("<p>None: every op runs in int8.</p>")

    parts.append('<h2 id="sensitivity">Sensitivity ranking</h2>')
    if a.sensitivity:
        parts.append(f"<p>{html.escape(a.metric_name)} with only this layer in int8, with every layer but this one "
                     "in int8, and the gain of keeping it in float over the all-int8 model; most sensitive first.</p>")
        rows = [f'<tr class="sensitivity">{_td(str(i + 1))}{_td(s.name, "name")}{_td(f"{s.quantized_alone:.4g}")}'
                f'{_td(f"{s.float_alone:.4g}")}{_td(f"{s.gain:+.4g}")}</tr>' for i, s in enumerate(a.sensitivity)]
        parts.append(_table(("rank", "layer", "only this int8", "all but this int8", "gain"), rows, "sensitivity"))
    else:
        parts.append("<p>Not computed (the analysis ran with sensitivity=False).</p>")

    if histograms:
        plots = [(l, _histogram_plot(l)) for l in a.layers]
        plots = [(l, uri) for l, uri in plots if uri is not None]
        parts.append(f'<h2 id="histograms">Activation histograms ({len(plots)})</h2>')
        parts.append("<p>Histogram of each activation on the analysed batches (log scale); red lines mark the chosen range, "
                     "the grey band the observed one. Values outside the red lines are clipped.</p>")
        parts.append('<div class="hists">')
        parts += [f'<figure><img class="histogram" alt="{html.escape(l.name)}" src="{uri}">'
                  f"<figcaption>{html.escape(l.name)}</figcaption></figure>" for l, uri in plots]
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(analysis: Analysis, path: str, *, title: Optional[str] = None, histograms: bool = True) -> str:
    """Writes the report page of `analysis` to `path` and returns the path.

    The page holds the per-layer table (SQNR, cosine, weight-only and activation-only SQNR, chosen
    vs observed range, clipped fraction), the ops left in float with their boundary cost, the
    sensitivity ranking, a per-layer SQNR bar chart and (histograms=True) each activation's
    histogram with the chosen clipping range; images are PNGs embedded as data: URIs. The file is
    written to a temporary name and renamed, so a failure leaves no partial page.
    """
    if not isinstance(analysis, Analysis):
        raise TypeError(f"torchquantx.report.write_report: analysis should be a torchquantx.analysis.Analysis, got "
                        f"{type(analysis).__name__}")
    text = render_report(analysis, title=title, histograms=histograms)
    atomic_write(path, text.encode("utf-8"), "torchquantx.report.write_report")
    return path
