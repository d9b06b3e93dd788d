from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.browser_helpers import CHROMIUM, CHROMIUM_ARGS, Platform, start_platform


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    yield from start_platform(
        # Two small rungs: a quality menu with three renditions that two cores transcode live.
        STREAMD_HLS_LADDER="240p:426x240@30:400k,180p:320x180@15:200k",
        STREAMD_CHAT_REPORT_INTERVAL="1",
        STREAMD_HEALTH_INTERVAL="1",
        STREAMD_HLS_RECONNECT_WINDOW="3",
    )
