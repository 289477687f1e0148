"""One self-contained HTML file of a run: plots embedded as base64 PNG, no network needed to view it.

Per model key: the plot of every model's rolling metric with its marks, the
experiments (each challenger's test: traffic, pairs, p-values, outcome) and the
table of decisions.

>>> from stream_cd.analysis.timeline import read_run
>>> run = read_run(['{"decision_id": "k:1:volume:checkpoint", "model_key": "k", "action": "checkpoint", '
...                 '"trigger": "volume", "champion_version": "v1.1", "challenger_version": null, "events_seen": 1}'])
>>> page = render_html(run, "example")
>>> page.startswith("<!DOCTYPE html>") and "http" not in page.replace("http-equiv", "")
True
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from typing import Any

from stream_cd.analysis.timeline import Experiment, KeyTimeline, Run

__all__ = ["render_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.promote td, tr.rollback td { background: #eaf7ea; } tr.retrain td, tr.reset td { background: #fdeeee; }
tr.drop td { background: #f3f3f3; } img { max-width: 100%; }
details summary { cursor: pointer; margin: 0.5em 0; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _png(data: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _experiments(experiments: list[Experiment]) -> str:
    if not experiments:
        return "<p>No challenger was tested.</p>"
    rows = ["<tr><th>experiment</th><th>challenger</th><th>spec</th><th>born at</th><th>by</th><th>traffic</th>"
            "<th>pairs</th><th>p (better)</th><th>p (worse)</th><th>accuracy or loss difference, bounds</th>"
            "<th>outcome</th><th>at</th></tr>"]
    for x in experiments:
        traffic = ", ".join(f"{arm} {share:.0%}" for arm, share in (x.traffic or {}).items())
        ci = "" if not x.ci else f"[{x.ci[0]:+.4f}, {x.ci[1]:+.4f}]"
        rows.append(f"<tr><td>{_e(x.name)}</td><td>{_e(x.challenger)}</td><td>{_e(x.spec)}</td>"
                    f"<td class=num>{_num(x.born)}</td><td>{_e(x.trigger)}</td><td>{_e(traffic)}</td>"
                    f"<td class=num>{_num(x.pairs)}</td><td class=num>{_num(x.p_value)}</td>"
                    f"<td class=num>{_num(x.p_value_worse)}</td><td>{ci}</td><td>{_e(x.outcome)}</td>"
                    f"<td class=num>{_num(x.ended)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _rolling_text(d: dict[str, Any]) -> str:
    rolling = (d.get("evidence") or {}).get("rolling") or {}
    parts = [f"{arm} {state['version']}: {state['value']:.4f}" for arm, state in (rolling.get("arms") or {}).items()
             if state.get("value") is not None]
    return "; ".join(parts)


def _decisions(decisions: list[dict[str, Any]]) -> str:
    rows = ["<tr><th>events seen</th><th>action</th><th>trigger</th><th>champion</th><th>challenger</th>"
            "<th>rolling metric</th><th>evidence</th><th>decision id</th></tr>"]
    for d in decisions:
        evidence = {k: v for k, v in (d.get("evidence") or {}).items() if k != "rolling"}
        shown = ", ".join(f"{k}={_num(v) if isinstance(v, (int, float)) else _e(v)}" for k, v in evidence.items()
                          if k in ("pairs", "p_value", "p_value_worse", "reason", "detector", "recent_loss", "learned",
                                   "trigger", "replaced", "replaced_challenger"))
        rows.append(f"<tr class={_e(d['action'])}><td class=num>{_num(d.get('events_seen'))}</td><td>{_e(d['action'])}</td>"
                    f"<td>{_e(d['trigger'])}</td><td>{_e(d.get('champion_version'))}</td>"
                    f"<td>{_e(d.get('challenger_version'))}</td><td>{_e(_rolling_text(d))}</td><td>{shown}</td>"
                    f"<td><code>{_e(d.get('decision_id'))}</code></td></tr>")
    table = "<table>" + "".join(rows) + "</table>"
    if len(decisions) > 40:
        return f"<details><summary>all {len(decisions):,} decisions</summary>{table}</details>"
    return table


def _key_section(key: KeyTimeline) -> str:
    from stream_cd.analysis.plots import key_plot_png

    counts: dict[str, int] = {}
    for mark in key.marks:
        counts[mark.kind] = counts.get(mark.kind, 0) + 1
    told = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(counts.items())) or "no drift, retrain or promotion"
    parts = [f"<h2>Model key {_e(key.key)}</h2>", f"<p>{len(key.decisions):,} decisions: {_e(told)}.</p>"]
    if key.series:
        parts.append(_png(key_plot_png(key), f"rolling {key.metric} of every model of {key.key}"))
    else:
        parts.append("<p>The decisions carry no rolling metric (a stream-cd from before it was added): no plot.</p>")
    if key.marks:
        parts.append("<ul>" + "".join(f"<li>at {m.at:,}: {_e(m.text)}</li>" for m in key.marks) + "</ul>")
    parts += ["<h3>Experiments</h3>", _experiments(key.experiments), "<h3>Decisions</h3>", _decisions(key.decisions)]
    return "\n".join(parts)


def _summary(summary: dict[str, Any] | None) -> str:
    if not summary:
        return ""
    rows = ["<tr><th>model key</th><th>champion</th><th>spec</th><th>metric</th><th>learned</th><th>retrains</th>"
            "<th>promotions</th><th>drops</th></tr>"]
    for key, m in (summary.get("models") or {}).items():
        metric = m.get("metric") or {}
        value = metric.get("value")
        rows.append(f"<tr><td>{_e(key)}</td><td>{_e(m.get('champion_version'))}</td><td>{_e(m.get('champion_spec'))}</td>"
                    f"<td>{_e(metric.get('name'))} {'' if value is None else f'{value:.4f}'}</td>"
                    f"<td class=num>{_num(m.get('learned'))}</td><td class=num>{_num(m.get('retrains'))}</td>"
                    f"<td class=num>{_num(m.get('promotions'))}</td><td class=num>{_num(m.get('drops'))}</td></tr>")
    return (f"<p>Summary of the run: {_num(summary.get('events'))} events, {_num(summary.get('invalid'))} invalid.</p>"
            "<table>" + "".join(rows) + "</table>")


def render_html(run: Run, source: str) -> str:
    """The report page of ``run``; ``source`` says where its decisions came from."""
    made = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    body = [f"<h1>stream-cd run report</h1><p>Decisions from {_e(source)}; {len(run.keys)} model key"
            f"{'s' if len(run.keys) != 1 else ''}; made {made}.</p>", _summary(run.summary)]
    body += [_key_section(key) for _, key in sorted(run.keys.items())]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><meta http-equiv=Content-Security-Policy "
            "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
            f"<title>stream-cd report</title><style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
