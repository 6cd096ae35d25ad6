"""What every browser test shares: Debian's Chromium, its flags, and the reason to skip when it is missing."""

from __future__ import annotations

import socket
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when Playwright and Chromium are both present."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install the version in requirements.lock)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run scripts/install_browser.sh"
    return None


def free_port() -> int:
    """A loopback port free at the moment of asking."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def open_chromium(playwright, profile: str, width: int, height: int, offline: bool = False):
    """A persistent context of Debian's Chromium on `profile`, headless, at `width` x `height` pixels;
    `offline`: no request leaves the machine."""
    return playwright.chromium.launch_persistent_context(
        profile,
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": width, "height": height},
        offline=offline,
    )
