"""The dashboard's SVG charts (issue 18): a one-point line is a labelled point, every chart
comes with its numbers in a collapsed table, and text is escaped."""

from annotate import charts


def test_a_single_point_is_drawn_as_a_labelled_point_with_its_table():
    svg = str(charts.line_chart([("v1 (40 images)", 0.8)], title="Accuracy", percent=True))
    assert svg.count("<circle") == 1 and 'class="single-point"' in svg
    assert "<path" not in svg  # no line through one point
    drawing = svg.split("</svg>")[0]
    assert ">80%</text>" in drawing and ">v1 (40 images)</text>" in drawing
    table = svg.split("</svg>")[1]
    assert table.startswith('<details class="chart-data">') and "<details open" not in table
    assert "<td>v1 (40 images)</td><td>80%</td>" in table


def test_a_line_writes_its_last_value_and_lists_every_point():
    points = [("2026-12-01", 3.0), ("2026-12-02", 7.0), ("2026-12-03", 5.0)]
    svg = str(charts.line_chart(points, title="Votes per day", column="Day"))
    assert svg.count("<circle") == 3 and "<path" in svg
    assert 'font-weight="600">5</text>' in svg
    assert '<th scope="col">Day</th>' in svg
    assert all(f"<td>{day}</td><td>{value:g}</td>" in svg for day, value in points)


def test_bars_put_labels_above_and_escape_them():
    svg = str(charts.bar_chart([("<b>cat</b>", 4), ("dog", 2)], title="Classes", column="Class"))
    assert "<b>" not in svg and "&lt;b&gt;cat&lt;/b&gt;" in svg
    assert svg.count("<rect") == 2
    assert "<td>dog</td><td>2</td>" in svg
    # A narrow canvas, so that the page scales it up, not down, on a phone.
    assert f'viewBox="0 0 {charts.WIDTH} ' in svg and charts.WIDTH <= 360


def test_no_data_says_so_without_a_chart():
    assert "nothing yet" in charts.bar_chart([], title="Classes")
    assert "<svg" not in charts.line_chart([], title="Votes")
