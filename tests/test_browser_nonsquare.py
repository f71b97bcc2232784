"""The page on a non-square conditional model (16 x 32 px portrait) in headless Chromium.

The stage takes the model's aspect, clicks land on the model pixels under them on both axes, the
class picker lists the model's classes and choosing one re-samples the image in that class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from server_harness import running_server
from test_browser_e2e import CHROMIUM, TIMEOUT_MS, browser, pixels, state, wait_state  # noqa: F401
from test_server_stylegan import C_DIM, H, W, tiny_conditional

from dragwalk.models import save_model

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]


@pytest.fixture(scope="module")
def page(tmp_path_factory, browser):
    path = save_model(tiny_conditional(), tmp_path_factory.mktemp("portrait") / "portrait.safetensors")
    with running_server(tmp_path_factory.mktemp("portrait-server"), model=str(path)) as server:
        context = browser.new_context(viewport={"width": 1360, "height": 860})
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.page_errors = []
        pg.on("pageerror", lambda exc: pg.page_errors.append(str(exc)))
        pg.goto(server.url("/?seed=3"))
        wait_state(pg, "s.conn.state === 'open' && s.session && s.frameCount > 0")
        yield pg
        assert pg.page_errors == [], pg.page_errors
        context.close()


def test_stage_has_the_models_aspect_and_clicks_map_per_axis(page):
    assert state(page, "[s.session.width, s.session.height]") == [W, H]
    image = pixels(page)
    assert image.shape[:2] == (H, W)
    box = page.get_by_test_id("overlay-canvas").bounding_box()
    assert abs(box["width"] / box["height"] - W / H) < 0.02, box
    for x, y in ((12, 27), (3, 5)):
        page.mouse.click(box["x"] + (x + 0.5) / W * box["width"], box["y"] + (y + 0.5) / H * box["height"])
    wait_state(page, "s.pairs.length === 1 && s.pairs[0].target")
    assert state(page, "[s.pairs[0].handle, s.pairs[0].target]") == [[12, 27], [3, 5]]
    # the server accepted them (bounded by 16 x 32, not 32 x 32)
    wait_state(page, "s.session.points.handles.length === 1")
    assert state(page, "s.session.points.handles[0]") == [12, 27]


def test_class_picker_resamples_in_the_chosen_class(page):
    picker = page.get_by_test_id("class-index")
    assert picker.is_visible() and picker.locator("option").count() == C_DIM
    assert page.get_by_test_id("noise-fields").is_visible()
    before = pixels(page)
    picker.select_option("2")
    wait_state(page, "s.session.settings.class_index === 2 && s.session.history.length === 2")
    wait_state(page, "s.frameCount > 1")
    page.wait_for_timeout(300)
    assert np.abs(pixels(page) - before).max() > 1.0
    page.get_by_test_id("noise-mode").select_option("random")
    wait_state(page, "s.session.settings.noise_mode === 'random' && s.session.history.length === 3")
