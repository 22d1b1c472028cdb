"""A live server, a real worker and headless Chromium for the browser tests (tests/test_browser.py).

The server and the worker are subprocesses on the test database and Redis db (conftest put
their URLs in `os.environ`), bound to 127.0.0.1 on a free port. Chromium is Debian's
(`/usr/bin/chromium`, installed by scripts/setup.sh): Playwright cannot download its own here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SAGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = ROOT / "docs" / "screenshots"
SCRATCH = ROOT / "instance" / "screenshots"


def chromium_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def live_server(log_dir: Path, env: dict[str, str] | None = None, processes: int | None = None) -> Iterator[str]:
    """`python -m app` on a free port (with `env` added to its environment, and `processes` web
    processes when given); yields its base URL once /health answers 200."""
    port = free_port()
    log = open(log_dir / "web.log", "wb")  # closed below, after the process
    extra = ["--processes", str(processes)] if processes else []
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port), *extra],
        cwd=ROOT,
        env=_env({"WS_POLL_SECONDS": "1", **(env or {})}),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the web server exited with {process.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not answer /health within 30 s; see {log.name}")
            time.sleep(0.2)
        yield base
    finally:
        _stop(process)
        log.close()


@contextlib.contextmanager
def worker(log_dir: Path) -> Iterator[subprocess.Popen]:
    """`python -m actors worker` (one process, four threads) on the test services."""
    log = open(log_dir / "worker.log", "wb")  # closed below, after the process
    process = subprocess.Popen(
        [sys.executable, "-m", "actors", "worker", "--processes", "1", "--threads", "4"],
        cwd=ROOT,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(1.0)
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}; see {log.name}")
        yield process
    finally:
        _stop(process)
        log.close()


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Save a full-page screenshot; into docs/screenshots/ only with SAGE_UPDATE_SCREENSHOTS=1.

    Tests always take the screenshot (a page that cannot render fails here), but only refresh
    the committed images when asked, so a test run leaves the working tree clean.
    """
    target_dir = SCREENSHOTS if os.environ.get("SAGE_UPDATE_SCREENSHOTS") == "1" else SCRATCH
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 5000, f"{path} looks empty"
    return path


AXE = ROOT / "tests" / "vendor" / "axe.min.js"  # vendored from npm by `npm run build`


def serious_accessibility_problems(page) -> list[str]:
    """Run axe-core (vendored, never from a CDN) on the page; its serious and critical violations."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated through DevTools, which the page's Content-Security-Policy does not govern (a
        # <script> tag added to the page would be refused, as it should be).
        page.evaluate(AXE.read_text() + "\n;void 0")
    violations = page.evaluate(
        """async () => {
            const result = await window.axe.run(document, { resultTypes: ["violations"] });
            return result.violations
                .filter((v) => v.impact === "serious" || v.impact === "critical")
                .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
        }"""
    )
    return violations
