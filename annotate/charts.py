"""Small SVG charts rendered on the server: no JavaScript library, no CDN, text escaped."""

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

PALETTE = ["#0b5fff", "#2e9d5b", "#c77c02", "#b3261e", "#7a4dd8", "#1b8fa6", "#5b6470"]


def bar_chart(
    items: Sequence[tuple[str, float]], *, title: str, width: int = 560, bar_height: int = 22
) -> SafeString:
    """Horizontal bars, one per (label, value), with the value written at the bar's end."""
    if not items:
        return mark_safe(
            f'<p class="muted">{escape(gettext("%(chart)s: nothing yet.") % {"chart": title})}</p>'
        )
    label_width = 160
    top = max(value for _, value in items) or 1
    height = bar_height * len(items) + 8
    rows = []
    for index, (label, value) in enumerate(items):
        y = 4 + index * bar_height
        length = (width - label_width - 60) * value / top
        rows.append(
            f'<text x="{label_width - 8}" y="{y + bar_height * 0.7:.1f}" text-anchor="end">'
            f"{escape(str(label)[:24])}</text>"
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{bar_height - 6}" '
            f'fill="{PALETTE[index % len(PALETTE)]}" rx="3">'
            f"<title>{escape(str(label))}: {value:g}</title></rect>"
            f'<text x="{label_width + length + 6:.1f}" y="{y + bar_height * 0.7:.1f}">'
            f"{value:g}</text>"
        )
    return mark_safe(
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(title)}</title>{''.join(rows)}</svg>"
    )


def line_chart(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 560,
    height: int = 180,
    y_max: float | None = None,
    percent: bool = False,
) -> SafeString:
    """A line through (x label, value) points, evenly spaced, with the first and last x labels."""
    if not points:
        return mark_safe(
            f'<p class="muted">{escape(gettext("%(chart)s: nothing yet.") % {"chart": title})}</p>'
        )
    left, right, top_pad, bottom = 44, 12, 12, 28
    top = y_max if y_max is not None else (max(v for _, v in points) or 1)
    span_x = width - left - right
    span_y = height - top_pad - bottom
    step = span_x / max(len(points) - 1, 1)
    coords = [
        (left + index * step, top_pad + span_y * (1 - value / top))
        for index, (_, value) in enumerate(points)
    ]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords))
    label = (lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:g}")
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[0]}">'
        f"<title>{escape(str(name))}: {label(value)}</title></circle>"
        for (x, y), (name, value) in zip(coords, points, strict=False)
    )
    axis = (
        f'<line x1="{left}" y1="{top_pad + span_y}" x2="{width - right}" y2="{top_pad + span_y}" '
        f'stroke="#aab2bd"/>'
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{label(top)}</text>'
        f'<text x="{left - 6}" y="{top_pad + span_y}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 8}">{escape(str(points[0][0]))}</text>'
        f'<text x="{width - right}" y="{height - 8}" text-anchor="end">'
        f"{escape(str(points[-1][0]))}</text>"
    )
    return mark_safe(
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="100%"><title>{escape(title)}</title>{axis}'
        f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>{dots}</svg>'
    )
