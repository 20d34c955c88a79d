"""The Prometheus text format 0.0.4: names, labels, escaping, values, histograms."""

from __future__ import annotations

import math

import pytest

from b2bua.ops.exposition import CONTENT_TYPE, Family, Sample, format_value, histogram, render


def test_counter_and_gauge_render_help_type_and_samples() -> None:
    """Each family gets # HELP, # TYPE and its samples, in order, ending with a newline."""
    text = render(
        [
            Family("b2bua_x_total", "counter", "things done", [Sample(3)]),
            Family("b2bua_y", "gauge", "level", [Sample(1.5, {"peer": "ocs"})]),
        ]
    )
    assert text == (
        "# HELP b2bua_x_total things done\n"
        "# TYPE b2bua_x_total counter\n"
        "b2bua_x_total 3\n"
        "# HELP b2bua_y level\n"
        "# TYPE b2bua_y gauge\n"
        'b2bua_y{peer="ocs"} 1.5\n'
    )


def test_label_values_and_help_are_escaped() -> None:
    """Backslash, double quote and newline are escaped in label values; \\ and \\n in help."""
    text = render([Family("m", "gauge", "a\\b\nc", [Sample(1, {"l": 'say "hi"\\\n'})])])
    assert "# HELP m a\\\\b\\nc\n" in text
    assert 'm{l="say \\"hi\\"\\\\\\n"} 1\n' in text


def test_values_are_written_as_prometheus_expects() -> None:
    """Integers without a fraction, floats as repr, +Inf, -Inf and NaN spelt out."""
    assert format_value(7) == "7"
    assert format_value(7.0) == "7"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    assert format_value(True) == "1"


def test_invalid_names_are_refused() -> None:
    """A metric or label name outside the allowed characters raises ValueError."""
    with pytest.raises(ValueError, match="metric name"):
        Family("b2bua-x", "gauge", "h")
    with pytest.raises(ValueError, match="label name"):
        Family("x", "gauge", "h", [Sample(1, {"__reserved": "v"})])


def test_a_family_may_not_be_rendered_twice() -> None:
    """Two families with one name in a scrape is a bug, refused."""
    with pytest.raises(ValueError, match="twice"):
        render([Family("x", "gauge", "h"), Family("x", "gauge", "h")])


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    """Observations land in every bucket whose bound is >= them; +Inf holds them all."""
    family = Family(
        "lat_seconds", "histogram", "latency", histogram([0.1, 0.5], [0.05, 0.2, 0.7], {"p": "a"})
    )
    assert render([family]).splitlines()[2:] == [
        'lat_seconds_bucket{p="a",le="0.1"} 1',
        'lat_seconds_bucket{p="a",le="0.5"} 2',
        'lat_seconds_bucket{p="a",le="+Inf"} 3',
        'lat_seconds_sum{p="a"} 0.95',
        'lat_seconds_count{p="a"} 3',
    ]


def test_histogram_bounds_must_increase() -> None:
    """Unsorted or repeated bounds are refused."""
    with pytest.raises(ValueError, match="increasing"):
        histogram([0.5, 0.1], [])


def test_empty_scrape_and_content_type() -> None:
    """No families renders nothing; the content type names version 0.0.4."""
    assert render([]) == ""
    assert "version=0.0.4" in CONTENT_TYPE
