"""Headless Chromium for the tests, and a small PNG reader for its screenshots.

``needs_chromium`` skips a test when the Debian ``chromium`` / ``chromium-driver`` packages (or the
same programs on PATH) are absent; ``headless_chromium`` starts the browser with the flags every
test wants and quits it at the end; ``decode_png`` and ``ink_fraction`` read a screenshot with the
standard library only (``zlib`` and ``struct``).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

DEBIAN_CHROMIUM = "/usr/bin/chromium"
DEBIAN_CHROMEDRIVER = "/usr/bin/chromedriver"
MISSING_REASON = ("needs chromium and chromedriver (Debian packages chromium and chromium-driver: "
                  f"{DEBIAN_CHROMIUM}, {DEBIAN_CHROMEDRIVER})")
COMMON_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run")


def _program(debian_path: str, name: str) -> str | None:
    if os.access(debian_path, os.X_OK):
        return debian_path
    return shutil.which(name)


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, the Debian ones first, else from PATH; None when either is absent."""
    chromium = _program(DEBIAN_CHROMIUM, "chromium")
    chromedriver = _program(DEBIAN_CHROMEDRIVER, "chromedriver")
    return (chromium, chromedriver) if chromium and chromedriver else None


needs_chromium = pytest.mark.skipif(find_chromium() is None, reason=MISSING_REASON)


@contextmanager
def headless_chromium(folder: Path | str, *, window_size: tuple[int, int] = (1280, 800),
                      extra_flags: Iterable[str] = (), browser_log: bool = False) -> Iterator:
    """A Selenium Chrome driver on headless Chromium, quit on exit.

    The profile (``--user-data-dir``) is a new folder under ``folder``. ``SE_OFFLINE=true`` is set
    while the browser runs so Selenium Manager never goes to the network, and restored afterwards.
    With ``browser_log`` the driver keeps the console log (``driver.get_log("browser")``).
    Skips the test when chromium, chromedriver or selenium is missing.
    """
    programs = find_chromium()
    if programs is None:
        pytest.skip(MISSING_REASON)
    chromium, chromedriver = programs
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs the selenium package")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=folder)
    width, height = window_size
    for flag in (*COMMON_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", *extra_flags):
        options.add_argument(flag)
    if browser_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})

    before = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    try:
        driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        if before is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = before


class Png(NamedTuple):
    width: int
    height: int
    pixels: list[bytes]  # one bytes object per row, 3 bytes (R, G, B) per pixel; alpha is dropped


def decode_png(data: bytes) -> Png:
    """Read an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's screenshots are)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, bpp = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color_type in (2, 6) and interlace == 0, (depth, color_type, interlace)
            bpp = 3 if color_type == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = previous[i], previous[i - bpp] if i >= bpp else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 255
            elif filter_type == 2:
                line[i] = (line[i] + up) & 255
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 255
        if bpp == 4:
            rgb = bytearray(width * 3)
            rgb[0::3], rgb[1::3], rgb[2::3] = line[0::4], line[1::4], line[2::4]
            rows.append(bytes(rgb))
        else:
            rows.append(bytes(line))
        previous = line
    return Png(width, height, rows)


def ink_fraction(image: Png, near_white: int = 235) -> float:
    """Fraction of pixels that are not near-white: some channel below ``near_white``."""
    ink = sum(1 for row in image.pixels for x in range(0, len(row), 3) if min(row[x:x + 3]) < near_white)
    return ink / (image.width * image.height)
