"""The bench's HTML report, for a person deciding whether to trust the detections.

At the top: the run's figures, a summary table of every scenario (result, time to detect, events,
peak score against the alert threshold, rule, severity, ATT&CK and OWASP ids) and contents. Per
scenario: what it is, its window in absolute UTC times, the events (time, convergence id and
version, severity, score, rule, ids), a trust plot (trust written on the scenario's identities'
records, with the alert threshold and the events marked), and a timeline of the identities'
records in and around the window, one lane per action, the records that tripped a detector in
red with the detectors named. A benign scenario shows its peak score against the threshold.
Plots are inline SVG with labelled axes; legends are HTML beside them, so that labels never
overlap the data. ``tests/test_simulator.py`` renders it in headless Chromium and takes a screenshot.
"""

from __future__ import annotations

import datetime as dt
import html

from .scoring import GRACE_NS, attack_windows, in_attack_window

HOUR_NS = 3600 * 10**9
W, H = 920, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 44
COLOURS = ("#1f6feb", "#8250df", "#1a7f37", "#bf8700", "#0a7ea4", "#9a6700")
MAX_LANES = 8
TIMELINE_LEFT, LANE_CHARS = 200, 30   # room for the lane (action) names left of the timeline


def iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _tick(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%a %d %H:%M")


def _esc(text) -> str:
    return html.escape(str(text))


def _anchor(name: str) -> str:
    return "s-" + "".join(c if c.isalnum() else "-" for c in name)


class _Axes:
    """Time on x (UTC), a value on y; both axes drawn, ticked and labelled."""

    def __init__(self, lo: int, hi: int, height: int = H, left: int = LEFT):
        self.lo, self.hi, self.h, self.left = lo, hi, height, left

    def x(self, t: int) -> float:
        return self.left + (W - self.left - RIGHT) * (min(max(t, self.lo), self.hi) - self.lo) / max(1, self.hi - self.lo)

    def frame(self, y_label: str, title: str) -> list[str]:
        h, left = self.h, self.left
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" role="img" '
                 f'aria-label="{_esc(title)}" font-family="system-ui, sans-serif">',
                 f'<line x1="{left}" y1="{h - BOTTOM}" x2="{W - RIGHT}" y2="{h - BOTTOM}" stroke="#57606a"/>',
                 f'<line x1="{left}" y1="{TOP}" x2="{left}" y2="{h - BOTTOM}" stroke="#57606a"/>',
                 f'<text x="{(left + W - RIGHT) / 2}" y="{h - 6}" font-size="12" text-anchor="middle">'
                 f'event time (UTC)</text>',
                 f'<text x="14" y="{(TOP + h - BOTTOM) / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(TOP + h - BOTTOM) / 2})">{_esc(y_label)}</text>']
        for k in range(5):
            t = self.lo + (self.hi - self.lo) * k // 4
            anchor = "start" if k == 0 else "end" if k == 4 else "middle"
            parts.append(f'<line x1="{self.x(t):.1f}" y1="{h - BOTTOM}" x2="{self.x(t):.1f}" y2="{h - BOTTOM + 4}" '
                         f'stroke="#57606a"/><text x="{self.x(t):.1f}" y="{h - BOTTOM + 16}" font-size="11" '
                         f'text-anchor="{anchor}">{_tick(t)}</text>')
        return parts

    def window(self, start: int, end: int, attack: bool) -> str:
        return (f'<rect x="{self.x(start):.1f}" y="{TOP}" width="{max(2.0, self.x(end) - self.x(start)):.1f}" '
                f'height="{self.h - TOP - BOTTOM}" fill="{"#ffebe9" if attack else "#ddf4ff"}"/>')


def _span(label) -> tuple[int, int]:
    return label.start_ns - 6 * HOUR_NS, max(label.end_ns, label.start_ns + HOUR_NS) + 6 * HOUR_NS


def trust_plot(series: dict[str, list[tuple[int, float]]], label, events, threshold: float) -> tuple[str, str]:
    """The SVG and its HTML legend."""
    lo, hi = _span(label)
    ax = _Axes(lo, hi)

    def y(v: float) -> float:
        return H - BOTTOM - (H - TOP - BOTTOM) * v

    parts = ax.frame("trust (nhi.trust.score)", f"trust over time, {label.scenario}")
    parts.append(ax.window(label.start_ns, label.end_ns, label.kind == "attack"))
    for v in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:g}</text>')
    line = 1 - threshold
    parts.append(f'<line x1="{LEFT}" y1="{y(line):.1f}" x2="{W - RIGHT}" y2="{y(line):.1f}" stroke="#cf222e" '
                 f'stroke-dasharray="2 3"/>')
    legend = []
    for n, (ident, points) in enumerate(sorted(series.items())[:len(COLOURS)]):
        pts = [(t, v) for t, v in points if lo <= t <= hi]
        if not pts:
            continue
        steps = []  # trust holds its value until the next record says otherwise
        for (t, v), nxt in zip(pts, pts[1:] + [None]):
            steps.append(f"{ax.x(t):.1f},{y(v):.1f}")
            if nxt is not None:
                steps.append(f"{ax.x(nxt[0]):.1f},{y(v):.1f}")
        parts.append(f'<polyline points="{" ".join(steps)}" fill="none" stroke="{COLOURS[n]}" stroke-width="1.6"/>')
        legend.append(f'<span class="key" style="border-color:{COLOURS[n]}"></span>{_esc(ident)}')
    for e in events:
        if lo <= e.time_ns <= hi:
            parts.append(f'<line x1="{ax.x(e.time_ns):.1f}" y1="{TOP}" x2="{ax.x(e.time_ns):.1f}" y2="{H - BOTTOM}" '
                         f'stroke="#cf222e" stroke-dasharray="4 3"><title>{_esc(e.rule)} ({e.score:.2f}) at '
                         f'{iso(e.time_ns)}</title></line>')
    parts.append("</svg>")
    legend += ['<span class="key window"></span>scenario window',
               f'<span class="key dotted"></span>trust {line:.2f} = 1 &minus; alert threshold {threshold:.2f}',
               '<span class="key dashed"></span>convergence event']
    return "".join(parts), " &nbsp; ".join(legend)


def timeline_plot(records: dict[str, list[tuple[int, str, list[str]]]], label) -> tuple[str, str]:
    """One lane per action of the scenario's identities (the busiest MAX_LANES, the rest as
    "other"), each record a tick; the records that tripped a detector in red."""
    lo, hi = _span(label)
    points = [(t, ident, action, anomalies) for ident, rows in records.items() for t, action, anomalies in rows
              if lo <= t <= hi]
    if not points:
        return "", ""
    counts: dict[str, int] = {}
    for _, _, action, anomalies in points:
        counts[action] = counts.get(action, 0) + (100 if anomalies else 1)  # lanes with findings first
    lanes = sorted(counts, key=lambda a: -counts[a])[:MAX_LANES]
    other = len(counts) > len(lanes)
    names = lanes + (["(other actions)"] if other else [])
    height = TOP + BOTTOM + 22 * max(2, len(names))
    ax = _Axes(lo, hi, height, left=TIMELINE_LEFT)
    parts = ax.frame("action", f"timeline, {label.scenario}")
    parts.append(ax.window(label.start_ns, label.end_ns, label.kind == "attack"))
    lane_y = {name: TOP + 11 + 22 * i for i, name in enumerate(names)}
    for name, yy in lane_y.items():
        short = name if len(name) <= LANE_CHARS else "\u2026" + name[-(LANE_CHARS - 1):]
        parts.append(f'<text x="{TIMELINE_LEFT - 6}" y="{yy + 4}" font-size="10" text-anchor="end"><title>'
                     f'{_esc(name)}</title>{_esc(short)}</text><line x1="{TIMELINE_LEFT}" y1="{yy}" x2="{W - RIGHT}" '
                     f'y2="{yy}" stroke="#eaeef2"/>')
    detectors: dict[str, int] = {}
    for t, ident, action, anomalies in points:
        yy = lane_y.get(action, lane_y.get("(other actions)"))
        colour = "#cf222e" if anomalies else "#8c959f"
        tip = f"{iso(t)} {ident} {action}" + (f" tripped {', '.join(anomalies)}" if anomalies else "")
        parts.append(f'<rect x="{ax.x(t) - 1:.1f}" y="{yy - 6}" width="{3 if anomalies else 2}" height="12" '
                     f'fill="{colour}"><title>{_esc(tip)}</title></rect>')
        for d in anomalies:
            detectors[d] = detectors.get(d, 0) + 1
    parts.append("</svg>")
    lanes_html = "; ".join(f"<code>{_esc(n)}</code>" for n in names)
    found = ", ".join(f"<code>{_esc(d)}</code> ({n})" for d, n in sorted(detectors.items(), key=lambda kv: -kv[1]))
    legend = (f'<span class="key grey"></span>a record &nbsp; <span class="key red"></span>a record that tripped a '
              f'detector: {found or "none"}<br>lanes, top to bottom: {lanes_html}')
    return "".join(parts), legend


def _ids(references) -> str:
    attack = [r for r in references if r[:1] == "T"]
    owasp = [r for r in references if r.startswith("NHI")]
    return " ".join(f"<code>{_esc(r)}</code>" for r in attack + owasp)


def write_report(path: str, result, scenarios=None) -> None:
    """``result``: a ``bench.BenchResult``; ``scenarios``: the Scenario list (their references)."""
    score, labels, events = result.score, result.world.labels, result.events
    threshold = result.alert_threshold
    peaks = result.peaks()
    refs = {s.name: list(getattr(s, "references", []) or []) for s in scenarios or []}
    windows = attack_windows(labels)
    summary, sections, contents = [], [], []
    for row, label in zip(score.scenarios, labels):
        attack = row.kind == "attack"
        ok = row.detected == attack
        mine = sorted((e for e in events if e.identity_id in label.identity_ids), key=lambda e: e.time_ns)
        # what scoring counted: an attack's events in its window; a benign one's outside every attack
        counted = ([e for e in mine if label.start_ns <= e.time_ns <= label.end_ns + GRACE_NS] if attack
                   else [e for e in mine if not in_attack_window(e, windows)])
        verdict = ("detected" if row.detected else "MISSED") if attack else ("FALSE ALARM" if row.detected else "quiet")
        top = max(counted, key=lambda e: e.score, default=None)
        anchor = _anchor(row.name)
        ttd = f"{row.time_to_detect_s:.0f} s" if row.time_to_detect_s is not None else "&ndash;"
        summary.append(
            f'<tr class="{"" if ok else "failed"}"><td><a href="#{anchor}">{_esc(row.name)}</a></td>'
            f'<td>{row.kind}</td><td>{verdict}</td><td class="n">{ttd}</td><td class="n">{row.events}</td>'
            f'<td class="n">{peaks[row.name]:.2f}</td><td>{_esc(top.rule) if top else "&ndash;"}</td>'
            f'<td>{_esc(top.severity) if top and top.severity else "&ndash;"}</td>'
            f'<td>{_ids(refs.get(row.name, []))}</td></tr>')
        contents.append(f'<li><a href="#{anchor}">{_esc(row.name)}</a> ({row.kind}, {verdict})</li>')
        event_rows = "".join(
            f'<tr><td>{iso(e.time_ns)}</td><td><code>{_esc(e.convergence_id)}</code> v{e.version}</td>'
            f'<td>{_esc(e.severity) or "&ndash;"}</td><td class="n">{e.score:.2f}</td><td>{_esc(e.identity_id)}</td>'
            f'<td>{_esc(e.rule)}</td><td>{_ids(e.references)}</td></tr>' for e in mine)
        events_html = (f'<table><tr><th>time (UTC)</th><th>convergence id</th><th>severity</th><th>score</th>'
                       f'<th>identity</th><th>rule</th><th>ATT&amp;CK / OWASP</th></tr>{event_rows}</table>'
                       if mine else "<p>No event.</p>")
        if attack:
            outcome = (f"Detected {ttd} after the first step." if row.detected
                       else "<strong>Not detected.</strong>")
        else:
            peak = peaks[row.name]
            side = "above" if peak >= threshold else "below"
            outcome = (f"Peak score {peak:.2f}, {side} the alert threshold {threshold:.2f}: "
                       + ("<strong>raised an event.</strong>" if row.detected else "raised no event."))
        series = {i: result.trust.get(i, []) for i in label.identity_ids if result.trust.get(i)}
        trust_svg, trust_legend = trust_plot(series, label, mine, threshold)
        line_svg, line_legend = timeline_plot({i: result.timeline.get(i, []) for i in label.identity_ids}, label)
        findings = "".join(f"<li><code>{_esc(f)}</code></li>" for f in (mine[-1].findings if mine else []))
        sections.append(f"""
<section id="{anchor}">
  <h2>{_esc(row.name)} <span class="{'ok' if ok else 'bad'}">{row.kind}: {verdict}</span></h2>
  <p>{_esc(label.description)}</p>
  <p>Window {iso(label.start_ns)} to {iso(label.end_ns)} UTC (shaded). {outcome}
     Identities: {", ".join(f"<code>{_esc(i)}</code>" for i in label.identity_ids)}.
     {("References: " + _ids(refs[row.name]) + ".") if refs.get(row.name) else ""}</p>
  <h3>Events</h3>{events_html}
  <h3>Trust</h3>{trust_svg}<p class="legend">{trust_legend}</p>
  {f'<h3>Timeline</h3>{line_svg}<p class="legend">{line_legend}</p>' if line_svg else ''}
  {'<h3>Findings of the latest event</h3><ul>' + findings + '</ul>' if findings else ''}
</section>""")
    s = score
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nhi-convergence detection coverage</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #1f2328; }}
section {{ border-top: 1px solid #d0d7de; padding: 0.5em 0 1em; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }}
td.n {{ text-align: right; }}
tr.failed td {{ background: #ffebe9; }}
.ok {{ color: #1a7f37; font-size: 0.7em; }} .bad {{ color: #cf222e; font-size: 0.7em; }}
code {{ font-size: 0.9em; }}
.legend {{ font-size: 0.8em; color: #57606a; }}
.key {{ display: inline-block; width: 18px; height: 0; border-top: 2px solid; vertical-align: middle; margin-right: 4px; }}
.key.window {{ height: 10px; border: 0; background: #ffebe9; }} .key.dotted {{ border-top: 2px dotted #cf222e; }}
.key.dashed {{ border-top: 2px dashed #cf222e; }} .key.grey {{ width: 3px; height: 10px; border: 0; background: #8c959f; }}
.key.red {{ width: 3px; height: 10px; border: 0; background: #cf222e; }}
</style></head><body>
<h1>Detection coverage</h1>
<p>{len(result.world.fleet)} identities, {result.records_sent:,} records replayed, {result.records_received:,}
delivered downstream. Recall {s.recall:.2f}, precision {s.precision:.2f},
{len(s.false_positive_identities)} false-positive identities ({s.false_positives_per_1000_identity_days} per
1,000 identity-days), {s.events} events; alert threshold {threshold:.2f}.</p>
<h2>Summary</h2>
<table><tr><th>scenario</th><th>kind</th><th>result</th><th>time to detect</th><th>events</th>
<th>peak score</th><th>rule of the strongest event</th><th>severity</th><th>ATT&amp;CK / OWASP</th></tr>
{''.join(summary)}</table>
<h2>Contents</h2><ol>{''.join(contents)}</ol>
{''.join(sections)}
</body></html>"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
