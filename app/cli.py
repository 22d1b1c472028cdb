"""The `sage` command installed by `pip install -e .`: one entry point for every process and script.

    sage web [--host H --port P]      the web app (python -m app)
    sage worker [--processes N ...]   the Dramatiq workers (python -m actors worker)
    sage migrate | sage rollback      the schema (python -m models migrate|rollback)
    sage run FEATURE --team ID        a feature through the agent team (python -m actors run)
    sage rerun-session ID [--from R]  and the other `python -m actors` commands
    sage seed                         demo data (scripts/seed_test_data.py)

Each subcommand hands its arguments to the module that owns it, imported only when chosen, so
`sage web` never loads the workers and `sage worker` never loads Quart.
"""

from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# subcommand -> (module whose main(argv) runs it, argv prefix handed to that main)
_MODULES: dict[str, tuple[str, list[str]]] = {
    "web": ("app.__main__", []),
    "migrate": ("models.__main__", ["migrate"]),
    "rollback": ("models.__main__", ["rollback"]),
}
# Everything else is a `python -m actors` command (worker, run, rerun-session, rerun-task, sweep,
# brains, ...): the actors CLI owns the list and its help.
_ACTORS = "actors.__main__"


def usage() -> str:
    return (__doc__ or "").strip().split("\n\n")[1]


def main(argv: list[str] | None = None) -> int:
    """Dispatch `sage COMMAND ...` to the module that owns COMMAND."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print("usage: sage COMMAND [ARGS]\n\n" + usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "seed":
        sys.argv = [str(ROOT / "scripts" / "seed_test_data.py"), *rest]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0
    module, prefix = _MODULES.get(command, (_ACTORS, [command]))
    return int(importlib.import_module(module).main([*prefix, *rest]) or 0)


if __name__ == "__main__":
    sys.exit(main())
