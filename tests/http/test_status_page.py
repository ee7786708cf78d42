"""GET /: the live status page, in a real browser (Debian's chromium, driven by playwright)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.images import image_bytes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Where the screenshot under load is kept (docs/status-page.png is made this way).
SCREENSHOT = os.environ.get("AUTODEP_STATUS_SCREENSHOT")
WAIT_MS = 30_000  # every wait in the browser has this deadline

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (make chromium installs it)"
)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def number(page: Any, model: str, field: str) -> float:
    text = await page.text_content(f'section[data-model="{model}"] [data-field="{field}"]')
    return float(text.split()[0])


async def requests(server: Any, model: str, stop: asyncio.Event | int) -> None:
    """Requests one after the other until `stop` is set (or `stop` of them), a bad one in 25."""
    jpeg = image_bytes("blue")
    sent = 0
    while not (stop.is_set() if isinstance(stop, asyncio.Event) else sent >= stop):
        sent += 1
        await server.predict(b"not an image" if sent % 25 == 0 else jpeg, f"/predict/{model}")


async def ramp(server: Any) -> None:
    """For the README's picture: traffic that fills the charts and makes `slow` scale up."""
    for lanes in (1, 2, 4):
        await asyncio.gather(
            *(requests(server, m, 50) for m in ("colors", "slow") for _ in range(lanes))
        )


@pytest.mark.timeout(600 if SCREENSHOT else 120)
async def test_the_page_names_every_model_and_its_numbers_move_under_load(
    serve, browser, color_model, slow_model, tmp_path
):
    server = await serve(
        color_model, slow_model, max_workers=2, max_total_workers=4, max_batch_size=1, tick=0.5
    )
    async with server.session.get(server.url + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()
    main = html.split('<main id="models">', 1)[1].split("</main>", 1)[0]
    assert 'data-model="colors"' in main and 'data-model="slow"' in main

    page = await browser.new_page(viewport={"width": 1366, "height": 768})  # a laptop
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(server.url + "/")
    for model in ("colors", "slow"):
        await page.wait_for_selector(
            f'section[data-model="{model}"] [data-field="served"]', timeout=WAIT_MS
        )
    served_before = await number(page, "colors", "served")

    stop = asyncio.Event()
    load = asyncio.gather(*(requests(server, m, stop) for m in ("colors", "colors", "slow")))
    try:
        if SCREENSHOT:
            await ramp(server)
            await page.wait_for_selector('section[data-model="slow"] td.up', timeout=4 * WAIT_MS)
        # The page's own numbers: served grows, the request rate is above zero.
        await page.wait_for_function(
            """([before]) => {
                const field = (m, f) => document.querySelector(
                    `section[data-model="${m}"] [data-field="${f}"]`).textContent;
                return Number(field("colors", "served")) > before + 20
                    && parseFloat(field("colors", "rate")) > 0
                    && parseFloat(field("slow", "rate")) > 0
                    && Number(field("colors", "errors")) > 0;
            }""",
            arg=[served_before],
            timeout=WAIT_MS,
            polling=200,
        )
        rate = await number(page, "colors", "rate")
        assert rate > 0
        # The charts have drawn a line, and the latency percentiles have a value.
        assert await page.locator('section[data-model="colors"] svg path[d^="M"]').count() >= 3
        assert (await number(page, "colors", "p50")) > 0
        shot = tmp_path / "status-page.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if SCREENSHOT:  # a small PNG: 128 colours are plenty for this page
            small = Image.open(shot).convert("RGB").quantize(128, Image.Quantize.FASTOCTREE)
            small.save(SCREENSHOT, optimize=True)
    finally:
        stop.set()
        await load
    errors_table = await page.text_content('section[data-model="colors"] .details')
    assert "400" in errors_table
    assert errors == []


async def test_with_a_token_the_page_shows_nothing_until_the_fragment_gives_it(
    serve, browser, color_model
):
    server = await serve(color_model, max_workers=1, auth_token="s3cret")
    async with server.session.get(server.url + "/") as response:
        html = await response.text()
    main = html.split('<main id="models">', 1)[1].split("</main>", 1)[0]
    assert main.strip() == "", "the page names no model"

    page = await browser.new_page()
    await page.goto(server.url + "/")
    await page.wait_for_selector("#token-form:not([hidden])", timeout=WAIT_MS)
    assert await page.locator("section[data-model]").count() == 0

    sent: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers) if r.url.endswith(("/status", "/metrics")) else None,
    )
    await page.goto(server.url + "/#token=s3cret")
    await page.reload()  # a fragment change alone does not reload the page
    await page.wait_for_selector('section[data-model="colors"] [data-field="served"]')
    assert sent and all(h.get("authorization") == "Bearer s3cret" for h in sent)
    assert await page.evaluate("location.hash") == "", "the token leaves the address bar"


async def test_the_optimizers_variant_is_shown_when_status_has_one(serve, browser, color_model):
    """`variant` comes with the optimizer; here it is added to the server's real answer."""
    server = await serve(color_model, max_workers=1)
    variant = {
        "name": "openvino-bf16",
        "candidates": [
            {"name": "openvino-bf16", "img_s": 541.2, "agreement": 1.0, "skipped": None},
            {"name": "torchscript", "img_s": 61.0, "agreement": 1.0, "skipped": None},
            {"name": "bf16-autocast", "img_s": None, "agreement": None, "skipped": "no AMX"},
        ],
    }

    async def with_variant(route: Any) -> None:
        response = await route.fetch()
        body = await response.json()
        body["models"]["colors"]["variant"] = variant
        await route.fulfill(response=response, json=body)

    page = await browser.new_page()
    await page.route("**/status", with_variant)
    await page.goto(server.url + "/")
    shown = page.locator('section[data-model="colors"] .variant')
    await shown.wait_for(timeout=WAIT_MS)
    text = await shown.text_content()
    assert "openvino-bf16" in text and "541/s" in text and "(no AMX)" in text
