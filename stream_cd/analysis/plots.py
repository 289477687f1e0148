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
    "experiment": ("#17becf", "-.", "experiment start or end"),
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
        xs, ys = zip(*sorted(key.served, key=lambda point: point[0]))  # stable: a promotion's two points in order
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


def freshness_plot_png(result) -> bytes:
    """Metric against staleness (lag): each evaluation point thin, the mean with its standard error bold."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    lags = [row.lag for row in result.rows]
    for i in range(len(result.points)):
        ax.plot(lags, [row.values[i] for row in result.rows], color="#1f77b4", alpha=0.25, linewidth=0.8,
                label="one evaluation point" if i == 0 else None)
    means = [row.mean for row in result.rows]
    errors = [row.sd / max(1, len(row.values)) ** 0.5 for row in result.rows]
    ax.errorbar(lags, means, yerr=errors, color="#1f77b4", linewidth=2.2, marker="o", capsize=4,
                label="mean over the points (± standard error)")
    ax.set_xlabel("staleness: events between the training window's end and the evaluated events")
    higher = result.metric != "MAE"
    ax.set_ylabel(f"{result.metric} on the newest {result.eval_n:,} events ({'higher' if higher else 'lower'} is better)")
    ax.set_title(f"value of fresh data: {result.spec} trained on {result.window:,} events, {len(result.points)} points")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def updates_plot_png(rows, metric: str) -> bytes:
    """Metric and training time against the update interval, stateful and stateless side by side."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for strategy, colour in (("stateful", "#2ca02c"), ("stateless", "#d62728")):
        mine = sorted((r for r in rows if r.strategy == strategy), key=lambda r: r.every)
        label = "stateful fine-tuning" if strategy == "stateful" else "stateless retraining from scratch"
        left.plot([r.every for r in mine], [r.value for r in mine], marker="o", color=colour, label=label)
        right.plot([r.every for r in mine], [r.train_seconds for r in mine], marker="o", color=colour, label=label)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("update every N events")
        ax.grid(True, alpha=0.3)
    left.set_ylabel(metric)
    left.set_title(f"{metric} of the served models")
    right.set_ylabel("training time (s)")
    right.set_title("compute: training time of all updates")
    left.legend(fontsize=8)
    return figure_png(fig)
