"""The bench's HTML report: per scenario, the targeted identity's trust over time (an inline SVG
plot with the scenario window shaded and events marked) and the events' explanations."""

from __future__ import annotations

import datetime as dt
import html

from .scenarios import Label
from .scoring import Event, Score

W, H, PAD = 900, 220, 40
HOUR_NS = 3600 * 10**9


def _when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%a %H:%M")


def plot(series: dict[str, list[tuple[int, float]]], label: Label, events: list[Event]) -> str:
    lo = label.start_ns - 12 * HOUR_NS
    hi = max(label.end_ns, label.start_ns + HOUR_NS) + 12 * HOUR_NS

    def x(t: int) -> float:
        return PAD + (W - 2 * PAD) * (min(max(t, lo), hi) - lo) / (hi - lo)

    def y(v: float) -> float:
        return H - PAD + (2 * PAD - H) * v

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
             f'aria-label="trust over time for {html.escape(label.scenario)}">',
             f'<rect x="{x(label.start_ns):.1f}" y="{PAD/2}" width="{max(2, x(label.end_ns) - x(label.start_ns)):.1f}" '
             f'height="{H - 1.5 * PAD}" fill="{"#fde2e2" if label.kind == "attack" else "#e2f0fd"}"/>',
             f'<line x1="{PAD}" y1="{y(0)}" x2="{W - PAD}" y2="{y(0)}" stroke="#999"/>',
             f'<line x1="{PAD}" y1="{y(0)}" x2="{PAD}" y2="{y(1)}" stroke="#999"/>']
    for v in (0, 0.5, 1):
        parts.append(f'<text x="{PAD - 6}" y="{y(v) + 4}" font-size="11" text-anchor="end">{v}</text>')
    for k in range(5):
        t = lo + (hi - lo) * k // 4
        parts.append(f'<text x="{x(t):.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">{_when(t)}</text>')
    colours = ["#1f6feb", "#8250df", "#1a7f37", "#bf8700"]
    for n, (ident, points) in enumerate(sorted(series.items())[:4]):
        pts = [(t, v) for t, v in points if lo <= t <= hi]
        if not pts:
            continue
        steps = []  # a step plot: trust holds its value until the next record says otherwise
        for (t, v), nxt in zip(pts, pts[1:] + [None]):
            steps.append(f"{x(t):.1f},{y(v):.1f}")
            if nxt is not None:
                steps.append(f"{x(nxt[0]):.1f},{y(v):.1f}")
        path = " ".join(steps)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colours[n]}" stroke-width="1.6"/>')
        parts.append(f'<text x="{W - PAD}" y="{14 + 13 * n}" font-size="11" text-anchor="end" '
                     f'fill="{colours[n]}">{html.escape(ident[:70])}</text>')
    for e in events:
        if lo <= e.time_ns <= hi:
            parts.append(f'<line x1="{x(e.time_ns):.1f}" y1="{y(1)}" x2="{x(e.time_ns):.1f}" y2="{y(0)}" '
                         f'stroke="#cf222e" stroke-dasharray="4 3"/>')
            parts.append(f'<circle cx="{x(e.time_ns):.1f}" cy="{y(1 - e.score):.1f}" r="4" fill="#cf222e">'
                         f'<title>{html.escape(e.rule)} ({e.score:.2f})</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def write_report(path: str, score: Score, labels: list[Label], events: list[Event],
                 trust: dict[str, list[tuple[int, float]]]) -> None:
    rows = []
    for row, label in zip(score.scenarios, labels):
        ok = row.detected == (row.kind == "attack")
        mine = [e for e in events if e.identity_id in label.identity_ids]
        series = {i: trust.get(i, []) for i in label.identity_ids if trust.get(i)}
        explanations = "".join(f"<li>{html.escape(x)}</li>" for x in row.explanations) or "<li>no event</li>"
        findings = "".join(
            f"<li><code>{html.escape(f)}</code></li>" for e in mine[-1:] for f in e.findings)
        rows.append(f"""
<section>
  <h2>{html.escape(row.name)} <span class="{'ok' if ok else 'bad'}">{row.kind}: {'detected' if row.detected else 'not detected'}</span></h2>
  <p>{html.escape(label.description)}</p>
  <p>Window {_when(label.start_ns)} to {_when(label.end_ns)} UTC (shaded); time to detect:
     {row.time_to_detect_s if row.time_to_detect_s is not None else '-'} s; events: {row.events}.</p>
  {plot(series, label, mine)}
  <h3>Explanations</h3><ul>{explanations}</ul>
  {'<h3>Findings of the latest event</h3><ul>' + findings + '</ul>' if findings else ''}
</section>""")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nhi-convergence detection coverage</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1000px; }}
section {{ border-top: 1px solid #ddd; padding: 0.5em 0 1em; }}
.ok {{ color: #1a7f37; font-size: 0.7em; }} .bad {{ color: #cf222e; font-size: 0.7em; }}
code {{ font-size: 0.85em; }}
</style></head><body>
<h1>Detection coverage</h1>
<p>Recall {score.recall:.2f}, precision {score.precision:.2f}, {len(score.false_positive_identities)}
false-positive identities ({score.false_positives_per_1000_identity_days} per 1,000 identity-days),
{score.events} events. Each plot shows the trust score (<code>nhi.trust.score</code>) the processor
wrote on the scenario's identities' records; red dashed lines are convergence events.</p>
{''.join(rows)}
</body></html>"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
