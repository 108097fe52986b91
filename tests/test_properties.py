"""Property tests (hypothesis) for the input-safety helpers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from polymodal.data import loaders
from polymodal.errors import LoadError
from polymodal.metrics.classification import label_key

segment = st.sampled_from(["..", ".", "a", "b", "c.png", "", "..."])


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(segment, min_size=1, max_size=6))
def test_confined_resolve_path_never_escapes_the_root(tmp_path_factory, parts):
    base = tmp_path_factory.getbasetemp() / "prop_root"
    root = base / "root"
    (root / "a" / "b").mkdir(parents=True, exist_ok=True)
    for d in (root, root / "a", root / "a" / "b", base):
        (d / "c.png").write_bytes(b"x")
    value = "/".join(parts)
    try:
        path = loaders.resolve_path(value, root, confine=True)
    except LoadError as e:
        assert "outside the data root" in str(e) or "file not found" in str(e)
    else:
        assert path.is_file() and path.is_relative_to(root.resolve())


@given(st.one_of(st.none(), st.just(float("nan")), st.text(alphabet=" \t\n", max_size=5)))
def test_empty_values(value):
    assert loaders.is_empty(value)


@given(st.one_of(st.integers(), st.floats(allow_nan=False), st.text(min_size=1).filter(lambda s: s.strip())))
def test_non_empty_values(value):
    assert not loaders.is_empty(value)


@given(st.integers(-(10**6), 10**6))
def test_label_key_matches_ints_floats_and_strings(i):
    assert label_key(i) == label_key(float(i)) == label_key(str(i)) == label_key(np.int64(i))
