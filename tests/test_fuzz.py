"""The schemathesis run (`tests/fuzz_run.py`), in a pytest process of its own.

Hypothesis explores deeply nested values while it generates requests, and on this CPython a
RecursionError inside that exploration can leave the interpreter's recursion bookkeeping off,
so that a later `ast` call in the same process (pytest's failure reports use one) raises
`SystemError: AST constructor recursion depth mismatch`. Running the fuzzing in a child process,
with its own database and Redis db, keeps that away from the rest of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_DB_NAME, TEST_REDIS_DB

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

ROOT = Path(__file__).resolve().parent.parent


def test_the_fuzz_run_finds_no_server_error_and_every_answer_as_documented():
    env = {
        **os.environ,
        "SAGE_TEST_DATABASE": f"{TEST_DB_NAME}_fuzz",
        "SAGE_TEST_REDIS_DB": str(TEST_REDIS_DB - 1 if TEST_REDIS_DB > 0 else 1),
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz_run.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
