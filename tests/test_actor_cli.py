"""`python -m actors`: every script documents itself; the worker supervises the configured pool."""

from __future__ import annotations

import pytest

import actors.__main__ as cli


@pytest.mark.parametrize("command", ["worker", "run", "rerun-session", "rerun-task", "sweep"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"python -m actors {command}" in capsys.readouterr().out


def test_the_worker_supervises_the_configured_pool(monkeypatch):
    import actors.supervisor as supervisor
    from models.settings import Settings

    seen = {}
    monkeypatch.setattr(cli, "settings_or_exit", Settings.from_env)
    monkeypatch.setattr(supervisor, "supervise", lambda *args: seen.setdefault("args", args) and 0)
    monkeypatch.setenv("WORKER_PROCESSES", "3")
    monkeypatch.setenv("WORKER_GRACE_SECONDS", "12.5")
    assert cli.main(["worker", "--threads", "5"]) == 0
    assert seen["args"] == (3, 5, 12.5)


def test_run_refuses_an_unknown_team(capsys):
    assert cli.main(["run", "--team", "987654", "Chat", "--no-wait"]) == 2
    assert "no team 987654" in capsys.readouterr().err
