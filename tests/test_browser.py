"""The real app in a real browser (Playwright + Debian's /usr/bin/chromium).

Only what AppTest cannot see: pages render in the browser without an error box, a latent slider
moved with the keyboard really changes the decoded image (screenshots differ), and a training
job started from the Train page runs to completion through the auto-refreshing fragment and its
checkpoint is then selectable in the sidebar picker.

The server gets tiny checkpoints trained here (disviz.engine.train.train, tiny networks) through
$DISVIZ_CHECKPOINTS, and writes Train-page runs into a temp folder through $DISVIZ_RUNS.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from browser_util import CHROMIUM, CHROMIUM_ARGS, page_errors, streamlit_server, wait_for_app

pytestmark = pytest.mark.browser

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (make chromium, or apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

TINY = {"base_channels": 4, "hidden": 16}
RUN_NAME = "browser-run"


@pytest.fixture(scope="module")
def checkpoints_dir(tmp_path_factory) -> Path:
    """Tiny but real checkpoints of a Gaussian VAE (and a QLAE when registered) for the pickers."""
    from disviz.engine.train import TrainConfig, train
    from disviz.models import model_names

    root = tmp_path_factory.mktemp("ckpts")
    names = [m for m in ("betavae", "qlae") if m in model_names()]
    assert names, "no betavae / qlae in the model registry"
    for name in names:
        train(
            TrainConfig(
                model=name,
                dataset="dsprites",
                out=root / f"tiny-{name}",
                steps=20,
                batch_size=8,
                device="cpu",
                seed=0,
                overrides=dict(TINY),
                num_threads=1,
            )
        )
    return root


@pytest.fixture(scope="module")
def server(checkpoints_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    counts = tmp_path_factory.mktemp("counts") / "run_counts.json"
    env = {
        "DISVIZ_CHECKPOINTS": str(checkpoints_dir),
        "DISVIZ_RUNS": str(runs),
        "DISVIZ_RUN_COUNTS": str(counts),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    with streamlit_server(env, log) as srv:
        yield {"url": srv.url, "pid": srv.pid, "runs": runs, "log": log, "counts": counts}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(server["url"])
    wait_for_app(pg)
    yield pg
    ctx.close()


def nav_links(page) -> dict[str, str]:
    """Page label -> href, from the st.navigation sidebar."""
    links = {}
    for a in page.get_by_test_id("stSidebarNavLink").all():
        label = a.inner_text().strip()
        href = a.get_attribute("href")
        if label and href:
            links[label] = href
    return links


def goto(page, href: str) -> None:
    page.goto(href)
    wait_for_app(page)


def find_link(links: dict[str, str], *words: str) -> str:
    for label, href in links.items():
        if any(w.lower() in label.lower() or w.lower() in href.lower() for w in words):
            return href
    raise AssertionError(f"no page named like {words} in the navigation: {sorted(links)}")


def image_digests(page) -> list[str]:
    """Screenshots of every image in the main area, hashed (what the user sees, not the URL)."""
    out = []
    for img in page.locator("[data-testid='stMain'] img").all():
        if img.is_visible():
            img.scroll_into_view_if_needed()
            out.append(hashlib.sha256(img.screenshot()).hexdigest())
    return out


def test_every_page_opens_without_an_error_or_a_request_to_another_host(page, server):
    """Every page renders, and the app asks nothing of other hosts (it must work offline)."""
    local = (server["url"], "data:", "blob:", "about:")
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(local) else elsewhere.append(r.url))
    page.reload()
    wait_for_app(page)
    links = nav_links(page)
    assert len(links) >= 5, f"expected the app's pages in the sidebar navigation, found {sorted(links)}"
    assert page_errors(page) == []
    shots = os.environ.get("DISVIZ_SCREENSHOTS")  # set it to also save one PNG per page (docs)
    for label, href in links.items():
        goto(page, href)
        errors = page_errors(page)
        assert errors == [], f"page {label!r} shows an error:\n{errors}\n(server log: {server['log']})"
        assert page.locator("[data-testid='stMain']").inner_text().strip(), f"page {label!r} is empty"
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            slug = re.sub(r"[^a-z0-9]+", "-", label.splitlines()[-1].lower()).strip("-") or "page"
            page.screenshot(path=str(Path(shots) / f"{slug}.png"))
    assert elsewhere == [], f"the app requested other hosts: {sorted(set(elsewhere))[:5]}"


def test_moving_a_latent_slider_changes_the_decoded_image(page):
    goto(page, find_link(nav_links(page), "explore", "travers"))
    main = page.locator("[data-testid='stMain']")
    # the first latent's slider (keyed z0 by the Explore page); the thumb is an <input type=range>
    box = main.locator(".st-key-z0")
    if box.count() == 0:
        box = main.get_by_test_id("stSlider").first
    thumb = box.get_by_role("slider")
    thumb.first.wait_for(timeout=60_000)
    thumb = thumb.first
    wait_for_app(page, settle=0.5)
    before = image_digests(page)
    assert before, "the Explore page shows no image"
    value0 = thumb.input_value()
    thumb.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    thumb.blur()  # sliders send their value on release
    wait_for_app(page, settle=0.8)
    assert thumb.input_value() != value0, "the slider did not move"
    after = image_digests(page)
    assert page_errors(page) == []
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed, "no image changed after moving a latent slider"


def _set_input(page, key: str, value: str) -> None:
    box = page.locator(f".st-key-{key} input")
    box.scroll_into_view_if_needed()
    box.fill(value)
    box.press("Enter")
    wait_for_app(page)


def test_training_from_the_train_page_ends_in_the_sidebar_picker(page, server):
    goto(page, find_link(nav_links(page), "train"))
    assert page_errors(page) == []
    prefix = "train_betavae_dsprites"
    assert page.locator(f".st-key-{prefix}_steps input").count() == 1, "Train page defaults are not betavae/dsprites"
    _set_input(page, f"{prefix}_steps", "30")
    _set_input(page, f"{prefix}_batch", "8")
    _set_input(page, f"{prefix}_run_name_0", RUN_NAME)
    page.get_by_text("Network and likelihood").click()
    wait_for_app(page)
    for name, value in TINY.items():
        _set_input(page, f"{prefix}_{name}", str(value))
    page.locator(".st-key-train_start button").click()
    wait_for_app(page)
    # the 1-second fragment refreshes the job view until the success message shows
    page.get_by_text("The checkpoint is now in the sidebar picker").wait_for(timeout=120_000)
    wait_for_app(page)
    assert page_errors(page) == []
    assert (server["runs"] / RUN_NAME / "card.json").is_file()
    # the picker lists the new run: open each sidebar selectbox and look for it
    sidebar = page.get_by_test_id("stSidebar")
    picked = None
    for box in sidebar.get_by_test_id("stSelectbox").all():
        box.click()
        options = page.get_by_role("option")
        options.first.wait_for(timeout=10_000)
        hit = options.filter(has_text=RUN_NAME)
        if hit.count():
            hit.first.click()
            picked = box
            break
        page.keyboard.press("Escape")
    assert picked is not None, "the trained run is not offered in the sidebar checkpoint picker"
    wait_for_app(page)
    assert page_errors(page) == []
    assert RUN_NAME in picked.locator("input").input_value(), "the trained run could not be selected"
    # "Explore this checkpoint" on the Train page selects it and opens Explore
    goto(page, find_link(nav_links(page), "train"))
    page.locator("[data-testid='stMain'] button", has_text="Explore this checkpoint").first.click()
    wait_for_app(page)
    page.wait_for_url(lambda url: "train" not in url, timeout=30_000)
    wait_for_app(page)
    assert page_errors(page) == []
    assert RUN_NAME in sidebar.get_by_test_id("stSelectbox").first.locator("input").input_value()


def _download(page, button_text: str) -> bytes:
    """Click the download button labelled ``button_text`` and return the downloaded bytes."""
    button = page.locator("[data-testid='stDownloadButton'] button", has_text=button_text).first
    button.scroll_into_view_if_needed()
    with page.expect_download(timeout=60_000) as info:
        button.click()
    path = info.value.path()
    return Path(path).read_bytes()


def test_exports_download_png_and_csv(page):
    goto(page, find_link(nav_links(page), "explore", "travers"))
    png = _download(page, "Download the grid (PNG)")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    goto(page, find_link(nav_links(page), "latent space"))
    csv = _download(page, "Download the encodings (CSV)").decode()
    header, first = csv.splitlines()[:2]
    assert header.startswith("sample,shape,scale,orientation,posX,posY,z0") and first.startswith("0,")
    assert page_errors(page) == []


def test_latent_space_click_a_point_and_send_it_to_explore(page):
    goto(page, find_link(nav_links(page), "latent space"))
    main = page.locator("[data-testid='stMain']")
    chart = main.get_by_test_id("stPlotlyChart").first
    chart.scroll_into_view_if_needed()
    point = chart.locator(".scatterlayer .point").first
    point.wait_for(timeout=60_000)
    assert chart.locator(".scatterlayer .point").count() >= 1000, "the scatter does not show the encoded sample"
    # a box selection over the middle of the plot (plotly hit-tests mouse positions, not DOM clicks)
    box = chart.locator(".nsewdrag").first.bounding_box()
    assert box, "the scatter has no drag layer"
    x0, y0 = box["x"] + 0.1 * box["width"], box["y"] + 0.1 * box["height"]
    x1, y1 = box["x"] + 0.9 * box["width"], box["y"] + 0.9 * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * k / 10, y0 + (y1 - y0) * k / 10)
    page.mouse.up()
    wait_for_app(page, settle=0.8)
    use = main.locator("button", has_text="Use as base image in Explore")
    use.wait_for(timeout=30_000)
    assert main.get_by_text("point #").count() >= 1
    use.click()
    wait_for_app(page)
    page.get_by_text("Explore the latent space").first.wait_for(timeout=30_000)  # the Explore page's title
    wait_for_app(page)
    assert page.get_by_text("picked point").count() >= 1, "Explore does not offer the picked point as its base"
    assert page_errors(page) == []


def test_lessons_open_on_the_shipped_checkpoints(page):
    goto(page, find_link(nav_links(page), "lessons"))
    main = page.locator("[data-testid='stMain']")
    radios = main.get_by_test_id("stRadio").first.locator("[role='radiogroup'] label")
    n = radios.count()
    from disviz.app.lessons import LESSONS

    assert n == len(LESSONS) == 6, f"expected {len(LESSONS)} lessons, found {n}"
    for i in range(n):
        radios.nth(i).click()
        wait_for_app(page, settle=0.5)
        assert page_errors(page) == [], f"lesson {i + 1} shows an error"
        text = main.inner_text()
        computed = ("shipped", "Measured", "On Shapes3D", "β-VAE runs", "MIG peaked", "finished runs")
        assert any(w in text for w in computed), f"lesson {i + 1} shows no computed statement"


def test_sweeps_page_draws_the_shipped_sweep_and_opens_a_run_in_explore(page):
    import json

    sweep = Path(__file__).resolve().parent.parent / "checkpoints/sweeps/dsprites_vae_seeds"

    def read_card_of(trial: str) -> dict:
        return json.loads((sweep / trial / "card.json").read_text())

    results = json.loads((sweep / "results.json").read_text())
    done = [r for r in results["trials"] if r["status"] == "done"]
    assert len(done) >= 3, "the shipped sweep has fewer than 3 finished trials"
    goto(page, find_link(nav_links(page), "sweeps"))
    main = page.locator("[data-testid='stMain']")
    if "dsprites_vae_seeds" not in main.locator(".st-key-sweeps_pick").inner_text():  # several sweeps are shipped
        main.locator(".st-key-sweeps_pick").click()
        page.get_by_role("option").filter(has_text="dsprites_vae_seeds").first.click()
        wait_for_app(page)
    assert "dsprites_vae_seeds" in main.inner_text()
    charts = main.get_by_test_id("stPlotlyChart")
    charts.first.locator(".boxlayer .point").first.wait_for(timeout=60_000)
    assert charts.count() >= 2, "expected the score distribution and the rank-correlation matrix"
    # every finished trial is one point of the distribution
    assert charts.first.locator(".boxlayer .point").count() == len(done)
    charts.nth(1).scroll_into_view_if_needed()
    charts.nth(1).locator(".hm").first.wait_for(timeout=30_000)  # the heatmap trace is drawn
    assert page_errors(page) == []
    main.locator("button", has_text="Open in Explore").click()
    wait_for_app(page)
    page.get_by_text("Explore the latent space").first.wait_for(timeout=30_000)
    wait_for_app(page)
    sidebar = page.get_by_test_id("stSidebar")
    # the picker's caption is the selected checkpoint's summary: the sweep trial's, not a shipped model's
    trial = read_card_of(done[0]["trial"])
    assert f"{trial['steps']:,} steps" in sidebar.inner_text(), "the opened trial is not selected in the picker"
    assert page_errors(page) == []


def _slider_thumb(page, key: str = "z0"):
    thumb = page.locator(f"[data-testid='stMain'] .st-key-{key} input[type='range']").first
    thumb.wait_for(state="attached", timeout=60_000)
    return thumb


def _decoded_src(page) -> str:
    return page.locator("img[alt='decoded from the sliders']").first.get_attribute("src") or ""


def test_a_slider_step_reruns_only_the_slider_panel(page, server):
    """Server-side run counters: the step runs the slider fragment, not the page, and builds no grid."""
    from disviz.serving.counters import read_counts

    goto(page, find_link(nav_links(page), "explore", "travers"))
    page.locator("img[alt='traversal grid']").first.wait_for(timeout=60_000)
    before_src = _decoded_src(page)
    before = read_counts(server["counts"])
    assert before.get("explore_page_runs", 0) >= 1 and before.get("explore_slider_runs", 0) >= 1
    thumb = _slider_thumb(page)
    thumb.focus()
    page.keyboard.press("PageUp")
    thumb.blur()
    page.wait_for_function(
        "(b) => { const i = document.querySelector(\"img[alt='decoded from the sliders']\"); "
        "return i && i.getAttribute('src') !== b; }",
        arg=before_src,
        timeout=60_000,
    )
    wait_for_app(page)
    after = read_counts(server["counts"])
    assert after["explore_slider_runs"] == before["explore_slider_runs"] + 1
    assert after.get("explore_page_runs", 0) == before.get("explore_page_runs", 0), "the whole page ran again"
    assert after.get("traversal_grid_builds", 0) == before.get("traversal_grid_builds", 0)
    assert page_errors(page) == []


def test_a_deep_link_reopens_the_view_after_a_reload(page, server):
    goto(page, find_link(nav_links(page), "explore", "travers"))
    thumb = _slider_thumb(page)
    thumb.focus()
    page.keyboard.press("PageUp")
    thumb.blur()
    wait_for_app(page)
    page.wait_for_url(lambda url: re.search(r"[?&]z\d+=", url) and "ckpt=" in url and "seed=" in url, timeout=30_000)
    value = thumb.input_value()
    src = _decoded_src(page)
    page.reload()
    wait_for_app(page)
    thumb = _slider_thumb(page)
    assert thumb.input_value() == value, "the reloaded link lost the slider value"
    page.locator("img[alt='decoded from the sliders']").first.wait_for(timeout=30_000)
    assert _decoded_src(page) == src, "the reloaded link decodes another image"
    assert page_errors(page) == []


def test_several_sessions_at_once_each_get_their_images(server):
    """bench serve's own driver, small: concurrent sessions, every move answered, nothing broken."""
    from concurrent.futures import ThreadPoolExecutor

    from disviz.serving.bench import run_bench

    with ThreadPoolExecutor(1) as pool:  # its own thread: the module's sync Playwright owns this one's loop
        res = pool.submit(
            run_bench, server["url"], server["pid"], 4, 2, think_s=0.1, timeout_s=90, log=lambda _: None
        ).result()
    assert res.errors == {"exceptions": 0, "broken_images": 0, "disconnects": 0, "timeouts": 0}, res.notes
    assert res.move_ms["n"] == 8 and res.load_s["n"] == 4
