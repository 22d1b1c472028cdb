"""The README's commands are true: `make run` serves the web on the port the README names."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from honcho.environ import expand_processes, parse_procfile

from models.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def readme_port() -> int:
    """The port of the README's `curl localhost:PORT/health` check."""
    match = re.search(r"curl localhost:(\d+)/health", (ROOT / "README.md").read_text())
    assert match, "the README names no health check URL"
    return int(match.group(1))


def make_run_port() -> int:
    """The PORT that `make run` hands honcho, read from make's own dry run."""
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "WEB_PORT", "MAKEFLAGS"}}
    out = subprocess.run(["make", "-n", "run"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if "honcho start" in line)
    match = re.search(r"\bPORT=(\d+)\b", line)
    assert match, f"`make run` does not set honcho's base PORT: {line!r}"
    return int(match.group(1))


def test_make_run_serves_the_web_on_the_readme_port():
    port = make_run_port()
    processes = parse_procfile((ROOT / "Procfile").read_text()).processes
    expanded = {p.name: p for p in expand_processes(processes, env={"PORT": str(port)})}
    web_env = expanded["web.1"].env
    assert Settings.from_env({**web_env, "SAGE_ENV": "test"}).port == readme_port()


def test_the_procfile_web_process_does_not_pin_another_port():
    web = parse_procfile((ROOT / "Procfile").read_text()).processes["web"]
    assert not re.search(r"--port\s+\d+|:\d{4}", web), web
