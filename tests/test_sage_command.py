"""The installable package: `pip install -e .` gives a `sage` command that reaches every entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app import cli

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_builds_a_package_with_the_sage_console_command():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["project"]["scripts"]["sage"] == "app.cli:main"


@pytest.mark.parametrize(
    ("argv", "module", "forwarded"),
    [
        (["web", "--port", "9000"], "app.__main__", ["--port", "9000"]),
        (["migrate"], "models.__main__", ["migrate"]),
        (["rollback"], "models.__main__", ["rollback"]),
        (["worker", "--processes", "1"], "actors.__main__", ["worker", "--processes", "1"]),
        (["run", "Chat", "--team", "1"], "actors.__main__", ["run", "Chat", "--team", "1"]),
        (["rerun-session", "4", "--from", "dba"], "actors.__main__", ["rerun-session", "4", "--from", "dba"]),
    ],
)
def test_each_subcommand_reaches_the_module_that_owns_it(monkeypatch, argv, module, forwarded):
    calls = []
    target = sys.modules.get(module) or __import__(module, fromlist=["main"])
    monkeypatch.setattr(target, "main", lambda a: calls.append(a) or 0)
    assert cli.main(argv) == 0
    assert calls == [forwarded]


def test_sage_migrate_runs_against_the_configured_database(settings):
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"], cwd="/", env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "migrations applied" in out.stdout


def test_bad_arguments_exit_2_with_the_actors_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rerun-session", "not-a-number"])
    assert exit_info.value.code == 2
    assert "rerun-session" in capsys.readouterr().err


def test_no_arguments_prints_usage_and_fails(capsys):
    assert cli.main([]) == 2
    assert "sage web" in capsys.readouterr().out
