"""Small SVG drawings made on the server: a line chart and a step graph. No chart library,
no script; colours are attributes, so the page's CSP (no inline style) holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2458d3", "#d9480f", "#1d7a3e", "#9c36b5", "#c92a2a", "#0b7285")
STATUS_FILL = {"succeeded": "#dcf3e3", "failed": "#fde3df", "timed_out": "#fde3df",
               "canceled": "#eeeeee", "skipped": "#eeeeee", "running": "#dde7fd",
               "queued": "#fbefcf", "pending": "#ffffff"}


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]  # (x, y); x is a time or an index


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / count
    return [low + step * i for i in range(count + 1)]


def _label(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def line_chart(series: Sequence[Series], *, title: str, y_unit: str = "",
               x_labels: Mapping[float, str] | None = None, width: int = 560,
               height: int = 220) -> Markup:
    """Lines (and dots) for each series on shared axes; y starts at zero."""
    left, right, top, bottom = 52, 12, 26, 30
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>",
             f'<text x="{left}" y="16" font-weight="600">{escape(title)}</text>']
    if not xs:
        parts.append(f'<text x="{left}" y="{height / 2}">no data yet</text></svg>')
        return Markup("".join(parts))
    x0, x1 = min(xs), max(xs)
    y1 = max(ys) * 1.1 or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (plot_w * (x - x0) / (x1 - x0) if x1 > x0 else plot_w / 2)

    def py(y: float) -> float:
        return top + plot_h - plot_h * y / y1

    for tick in _ticks(0, y1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{py(tick):.1f}" '
                     f'y2="{py(tick):.1f}" stroke="#e3e7ee"/>'
                     f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">'
                     f"{escape(_label(tick))}</text>")
    for x, text in (x_labels or {}).items():
        parts.append(f'<text x="{px(x):.1f}" y="{height - 10}" text-anchor="middle">'
                     f"{escape(text)}</text>")
    if y_unit:
        parts.append(f'<text x="{left - 6}" y="{top - 8}" text-anchor="end">{escape(y_unit)}'
                     "</text>")
    for index, line in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in line.points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{coords}"/>')
        for x, y in line.points:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}">'
                         f"<title>{escape(line.label)}: {escape(_label(y))}</title></circle>")
        legend_x = left + 8 + index * 130
        parts.append(f'<rect x="{legend_x}" y="{top + 2}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{legend_x + 14}" y="{top + 11}">'
                     f"{escape(line.label[:18])}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Node:
    name: str
    needs: Sequence[str]
    status: str
    note: str = ""
    href: str = ""


def step_graph(nodes: Sequence[Node], *, title: str) -> Markup:
    """Steps in columns by depth (a step sits right of everything it needs), arrows between."""
    depth: dict[str, int] = {}
    for node in nodes:  # given in an order they can run in
        depth[node.name] = 1 + max((depth.get(n, 0) for n in node.needs), default=-1)
    columns: dict[int, list[str]] = {}
    for node in nodes:
        columns.setdefault(depth[node.name], []).append(node.name)
    box_w, box_h, gap_x, gap_y, pad = 170, 48, 60, 22, 12
    place = {name: (pad + col * (box_w + gap_x), pad + 20 + row * (box_h + gap_y))
             for col, names in columns.items() for row, name in enumerate(names)}
    width = pad * 2 + len(columns) * (box_w + gap_x) - gap_x
    height = pad * 2 + 20 + max(len(n) for n in columns.values()) * (box_h + gap_y) - gap_y
    parts = [f'<svg class="chart graph" role="img" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>",
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#7b8594"/>'
             "</marker></defs>"]
    for node in nodes:
        x, y = place[node.name]
        for need in node.needs:
            nx, ny = place[need]
            parts.append(f'<line x1="{nx + box_w}" y1="{ny + box_h / 2}" x2="{x - 2}" '
                         f'y2="{y + box_h / 2}" stroke="#7b8594" stroke-width="1.5" '
                         'marker-end="url(#arrow)"/>')
    for node in nodes:
        x, y = place[node.name]
        fill = STATUS_FILL.get(node.status, "#ffffff")
        box = (f'<g class="step" data-step="{escape(node.name)}" data-status='
               f'"{escape(node.status)}"><rect x="{x}" y="{y}" width="{box_w}" '
               f'height="{box_h}" rx="6" fill="{fill}" stroke="#8a94a6"/>'
               f'<text x="{x + 8}" y="{y + 19}" font-weight="600">{escape(node.name[:22])}</text>'
               f'<text x="{x + 8}" y="{y + 37}">{escape(node.status)} {escape(node.note)}</text>'
               f"<title>{escape(node.name)}: {escape(node.status)}</title></g>")
        if node.href:
            box = f'<a href="{escape(node.href)}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return Markup("".join(parts))
