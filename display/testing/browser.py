"""Headless Chromium through Selenium (Debian's ``chromium`` + ``chromium-driver``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def require_browser() -> None:
    """Skip (or, in CI, fail) when Chromium or its driver is missing."""
    if os.path.exists(CHROMEDRIVER) and shutil.which("chromium"):
        return
    if os.environ.get("CI"):
        pytest.fail("chromium and chromium-driver are missing: scripts/bootstrap installs them")
    pytest.skip("chromium / chromium-driver not installed (scripts/bootstrap, as root)")


@contextmanager
def chromium(width: int = 1280, height: int = 900, *, tz: str | None = None) -> Iterator[Any]:
    """A fresh headless Chromium (its own profile) with a ``width`` x ``height`` window;
    ``tz``: the browser's own zone (Chromium reads ``TZ`` from its environment)."""
    require_browser()
    os.environ["SE_AVOID_STATS"] = "true"  # Selenium Manager: no usage statistics
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="room-display-chromium-")
    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    env = {**os.environ, "TZ": tz} if tz else None
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=options)
    try:
        # The exact viewport (a window cannot be narrower than ~500 px; a phone is 390).
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
