"""Serving a class: deep-link parsing, inline images, run counters, /proc readings (no browser)."""

from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from disviz.serving.counters import count, read_counts
from disviz.serving.deeplink import MAX_SEED, check_factors, parse_explore_link
from disviz.serving.images import data_uri, img_html
from disviz.serving.server import cpu_seconds, rss_mb

MODES = ["std_gaussian", "minmax_interval"]


def test_a_good_link_is_read_whole():
    params = {"seed": "7", "z0": "0.5", "z2": "-1", "z10": "2.25", "anchor": "prior", "mode": "minmax_interval"}
    link = parse_explore_link(params, MODES)
    assert (link.seed, link.anchor, link.mode, link.problems) == (7, "prior", "minmax_interval", [])
    assert link.sliders == {0: 0.5, 2: -1.0, 10: 2.25}
    assert parse_explore_link({"factors": "0,5,39,31,31"}, MODES).factors == [0, 5, 39, 31, 31]


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"seed": "-1"}, "outside"),
        ({"seed": str(MAX_SEED + 1)}, "outside"),
        ({"seed": "1e3"}, "not a whole number"),
        ({"z1": "nan"}, "not a finite number"),
        ({"z0": "1,2"}, "not a number"),
        ({"z5000": "0"}, "at most"),
        ({"anchor": "sideways"}, "not one of"),
        ({"mode": "<script>"}, "not one of"),
        ({"factors": "a,b"}, "whole numbers"),
    ],
)
def test_a_bad_value_is_a_problem_and_not_used(params, said):
    link = parse_explore_link(params, MODES)
    assert len(link.problems) == 1 and said in link.problems[0]
    assert link.seed is None and not link.sliders and link.anchor is None and link.mode is None


@given(st.dictionaries(st.sampled_from(["seed", "z0", "z7", "anchor", "mode", "factors", "x"]), st.text(max_size=60)))
def test_any_query_string_parses_without_raising(params):
    link = parse_explore_link(params, MODES)
    assert link.seed is None or 0 <= link.seed <= MAX_SEED
    assert all(np.isfinite(v) for v in link.sliders.values())


def test_factor_classes_are_checked_against_the_dataset():
    sizes, names = [3, 6], ["shape", "scale"]
    assert check_factors([2, 5], sizes, names) is None
    assert "outside 0…5" in check_factors([0, 6], sizes, names)
    assert "2 (shape, scale)" in check_factors([0], sizes, names)


def test_inline_images_are_exact_pngs_and_escape_their_text():
    from PIL import Image

    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (64, 64, 1), dtype=np.uint8), rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)):
        uri = data_uri(img)
        assert uri.startswith("data:image/png;base64,")
        back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
        assert np.array_equal(back.reshape(img.shape), img)
    html = img_html("data:image/png;base64,AA==", alt='a "quoted" <alt>', caption="<b>caption</b>", width=320)
    assert '"quoted"' not in html and "<b>" not in html and "width: 320px" in html


def test_counters_are_off_unless_asked_and_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / "counts.json"
    monkeypatch.delenv("DISVIZ_RUN_COUNTS", raising=False)
    count("x")
    assert not target.exists()
    monkeypatch.setenv("DISVIZ_RUN_COUNTS", str(target))
    count("x")
    count("x")
    count("y")
    got = read_counts(target)
    assert got["x"] >= 2 and got["y"] >= 1 and not list(tmp_path.glob("*.tmp"))


def test_server_readings_come_from_proc():
    import time

    t = cpu_seconds(os.getpid())
    start = time.process_time()
    while time.process_time() - start < 0.1:  # 10 clock ticks: /proc counts CPU time in 10 ms ticks
        sum(i * i for i in range(10_000))
    assert cpu_seconds(os.getpid()) > t and rss_mb(os.getpid()) > 10
