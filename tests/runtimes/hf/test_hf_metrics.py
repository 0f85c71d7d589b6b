"""The hand-written Prometheus exposition: label escaping, cumulative histogram buckets, and
one HELP/TYPE header per metric."""

from __future__ import annotations

import pytest
from hf_helpers import parse_metrics

from kaito.runtimes.hf._metrics import Registry


def test_exposition_format() -> None:
    registry = Registry()
    requests = registry.counter("x_requests_total", "Requests.", ("path",))
    depth = registry.gauge("x_depth", "Depth.")
    sizes = registry.histogram("x_size", "Sizes.", (1, 4))
    requests.inc(path='/a"b\\c\nd')
    requests.inc(2, path="/z")
    depth.set(3)
    sizes.observe(1)
    sizes.observe_many([2, 4, 9])
    text = registry.render()
    assert text.count("# TYPE ") == 3
    assert "# TYPE x_size histogram" in text
    assert 'x_requests_total{path="/a\\"b\\\\c\\nd"} 1' in text
    samples = parse_metrics(text.replace('\\"', "'"))  # the test parser has no escape handling
    assert samples['x_requests_total{path="/z"}'] == 2
    assert samples["x_depth"] == 3
    assert samples['x_size_bucket{le="1"}'] == 1
    assert samples['x_size_bucket{le="4"}'] == 3
    assert samples['x_size_bucket{le="+Inf"}'] == 4
    assert samples["x_size_count"] == 4
    assert samples["x_size_sum"] == 16


def test_counters_refuse_to_go_down_and_check_labels() -> None:
    counter = Registry().counter("x_total", "X.", ("a",))
    with pytest.raises(ValueError, match="cannot go down"):
        counter.inc(-1, a="1")
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(b="1")
