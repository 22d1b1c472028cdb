"""`python -m actors`: every script documents itself; the worker gets a short poll timeout."""

from __future__ import annotations

import pytest

import actors.__main__ as cli


@pytest.mark.parametrize("command", ["worker", "run", "rerun-session", "rerun-task", "sweep"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"python -m actors {command}" in capsys.readouterr().out


def test_the_worker_runs_dramatiq_on_the_actors_with_a_short_poll_timeout(monkeypatch):
    seen = {}

    def fake_execv(path, argv):
        seen["argv"] = argv
        raise SystemExit(0)

    monkeypatch.setattr(cli, "preflight", lambda settings: None)
    monkeypatch.setattr(cli.os, "execv", fake_execv)
    monkeypatch.setenv("WORKER_TIMEOUT_MS", "75")
    monkeypatch.delenv("dramatiq_worker_timeout", raising=False)
    with pytest.raises(SystemExit):
        cli.main(["worker", "--processes", "1", "--threads", "3"])
    assert seen["argv"][1:6] == ["actors", "--processes", "1", "--threads", "3"]
    assert cli.os.environ["dramatiq_worker_timeout"] == "75"


def test_run_refuses_an_unknown_team(capsys):
    assert cli.main(["run", "--team", "987654", "Chat", "--no-wait"]) == 2
    assert "no team 987654" in capsys.readouterr().err
