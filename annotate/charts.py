"""Small SVG charts rendered on the server: no JavaScript library, no CDN, text escaped.

Drawn on a narrow canvas (WIDTH units) that the page scales to the card's width, capped by the
stylesheet, so that the text stays readable from a 360 px phone to a desktop (issue 18: at
560 units a phone showed it at about 9 px). Each chart comes with its numbers in a collapsed
table, for those who cannot read the drawing or want the figures."""

from collections.abc import Callable, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

PALETTE = ["#0b5fff", "#2e9d5b", "#c77c02", "#b3261e", "#7a4dd8", "#1b8fa6", "#5b6470"]
WIDTH = 320
FONT = 13  # units; about 12 px at a phone's card width


def _number(value: float) -> str:
    return f"{value:g}"


def data_table(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    column: str,
    value_text: Callable[[float], str] = _number,
) -> str:
    """The chart's numbers as a table inside a closed <details>."""
    rows = "".join(
        f"<tr><td>{escape(str(name))}</td><td>{escape(value_text(value))}</td></tr>"
        for name, value in items
    )
    return (
        f'<details class="chart-data"><summary>{escape(gettext("The numbers"))}</summary>'
        f'<table class="table"><caption class="muted small">{escape(title)}</caption>'
        f'<thead><tr><th scope="col">{escape(column)}</th>'
        f'<th scope="col">{escape(gettext("Value"))}</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></details>"
    )


def _svg(title: str, width: int, height: int, body: str) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    column: str = "",
    width: int = WIDTH,
    bar_height: int = 16,
) -> SafeString:
    """Horizontal bars, one per (label, value): the label above its bar, the value at the
    bar's end; then the numbers as a table."""
    if not items:
        return mark_safe(
            f'<p class="muted">{escape(gettext("%(chart)s: nothing yet.") % {"chart": title})}</p>'
        )
    top = max(value for _, value in items) or 1
    row_height = FONT + bar_height + 8
    value_room = 48
    rows = []
    for index, (label, value) in enumerate(items):
        y = 4 + index * row_height
        length = (width - value_room) * value / top
        rows.append(
            f'<text x="0" y="{y + FONT - 2}">{escape(str(label)[:40])}</text>'
            f'<rect x="0" y="{y + FONT + 1}" width="{length:.1f}" height="{bar_height}" '
            f'fill="{PALETTE[index % len(PALETTE)]}" rx="3">'
            f"<title>{escape(str(label))}: {value:g}</title></rect>"
            f'<text x="{length + 4:.1f}" y="{y + FONT + bar_height - 2}">{value:g}</text>'
        )
    height = 8 + row_height * len(items)
    return mark_safe(
        _svg(title, width, height, "".join(rows))
        + data_table(items, title=title, column=column or gettext("Label"))
    )


def line_chart(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    column: str = "",
    width: int = WIDTH,
    height: int = 170,
    y_max: float | None = None,
    percent: bool = False,
) -> SafeString:
    """A line through (x label, value) points, evenly spaced, with the first and last x labels
    and the last value written; a single point is drawn as a labelled point (a line needs
    two). Then the numbers as a table."""
    if not points:
        return mark_safe(
            f'<p class="muted">{escape(gettext("%(chart)s: nothing yet.") % {"chart": title})}</p>'
        )
    left, right, top_pad, bottom = 40, 12, 14, 34
    top = y_max if y_max is not None else (max(v for _, v in points) or 1)
    span_x = width - left - right
    span_y = height - top_pad - bottom
    label: Callable[[float], str] = (lambda v: f"{v:.0%}") if percent else _number
    table = data_table(points, title=title, column=column or gettext("When"), value_text=label)
    axis = (
        f'<line x1="{left}" y1="{top_pad + span_y}" x2="{width - right}" y2="{top_pad + span_y}" '
        f'stroke="#8a939e"/>'
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{label(top)}</text>'
        f'<text x="{left - 6}" y="{top_pad + span_y}" text-anchor="end">0</text>'
    )
    y_of = lambda value: top_pad + span_y * (1 - value / top)  # noqa: E731
    if len(points) == 1:
        name, value = points[0]
        x, y = left + span_x / 2, y_of(value)
        point = (
            f'<circle class="single-point" cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{PALETTE[0]}">'
            f"<title>{escape(str(name))}: {label(value)}</title></circle>"
            f'<text x="{x + 10:.1f}" y="{y + 4:.1f}" font-weight="600">{label(value)}</text>'
            f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">{escape(str(name))}</text>'
        )
        return mark_safe(_svg(title, width, height, axis + point) + table)
    step = span_x / (len(points) - 1)
    coords = [(left + index * step, y_of(value)) for index, (_, value) in enumerate(points)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords))
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[0]}">'
        f"<title>{escape(str(name))}: {label(value)}</title></circle>"
        for (x, y), (name, value) in zip(coords, points, strict=False)
    )
    last_x, last_y = coords[-1]
    ends = (
        f'<text x="{left}" y="{height - 10}">{escape(str(points[0][0]))}</text>'
        f'<text x="{width - right}" y="{height - 10}" text-anchor="end">'
        f"{escape(str(points[-1][0]))}</text>"
        f'<text x="{last_x:.1f}" y="{max(last_y - 8, FONT):.1f}" text-anchor="end" '
        f'font-weight="600">{label(points[-1][1])}</text>'
    )
    return mark_safe(
        _svg(
            title,
            width,
            height,
            axis + ends + f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" '
            f'stroke-width="2"/>{dots}',
        )
        + table
    )
