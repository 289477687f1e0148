"""The report's plots: matplotlib figures rendered to PNG bytes (no display needed).

>>> from stream_cd.analysis.timeline import KeyTimeline, Mark
>>> key = KeyTimeline("k", series={1: [(0, 0.9), (1000, 0.6)], 2: [(1000, 0.7), (2000, 0.85)]},
...                   served=[(0, 0.9), (1000, 0.6), (2000, 0.85)], marks=[Mark("drift", 900, "drift alarm")])
>>> key_plot_png(key)[:8]
b'\\x89PNG\\r\\n\\x1a\\n'
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from stream_cd.analysis.timeline import KeyTimeline  # noqa: E402

__all__ = ["key_plot_png", "figure_png", "MARK_STYLE"]

# kind -> (colour, line style, legend text)
MARK_STYLE = {
    "drift": ("#d62728", "--", "drift alarm"),
    "retrain": ("#1f77b4", ":", "retrain (trigger)"),
    "reset": ("#8c564b", "--", "reset"),
    "promotion": ("#2ca02c", "-", "promotion"),
    "rollback": ("#ff7f0e", "-", "rollback"),
    "canary": ("#9467bd", "-.", "canary step"),
    "drop": ("#7f7f7f", ":", "challenger dropped"),
}


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()


def key_plot_png(key: KeyTimeline) -> bytes:
    """The rolling metric of every model of ``key`` over the stream, the served champion in
    black, and a vertical line at each mark (drift alarms, retrains, promotions, ...)."""
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for m, points in sorted(key.series.items()):
        xs, ys = zip(*points)
        spec = key.specs.get(m)
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=f"v{m}" + (f" ({spec})" if spec else ""))
    if key.served:
        xs, ys = zip(*sorted(key.served))
        ax.plot(xs, ys, color="black", linewidth=2.4, alpha=0.35, label="served (the champion)")
    shown: set[str] = set()
    for mark in key.marks:
        colour, style, text = MARK_STYLE.get(mark.kind, ("black", "-", mark.kind))
        ax.axvline(mark.at, color=colour, linestyle=style, linewidth=1.4,
                   label=None if mark.kind in shown else text)
        shown.add(mark.kind)
    higher = key.metric != "MAE"
    window = f", window {key.window:,} events" if key.window else ""
    ax.set_title(f"model key {key.key!r}: rolling {key.metric} of every model{window}")
    ax.set_xlabel("events of the model key")
    ax.set_ylabel(f"{key.metric} ({'higher' if higher else 'lower'} is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return figure_png(fig)
