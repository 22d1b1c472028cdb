"""One vocabulary of message types and close codes, shared by the server, the bundle and the docs."""

from __future__ import annotations

import re
from pathlib import Path

from app import live, ws
from models import schema, vocabulary

ROOT = Path(__file__).resolve().parent.parent
ISLANDS = ROOT / "static" / "src" / "islands"
DOC = ROOT / "docs" / "api.md"


def test_the_bundles_vocabulary_is_the_one_generated_from_the_python_module():
    committed = (ROOT / vocabulary.JS_PATH).read_text()
    assert committed == vocabulary.render_js(), "static/src/islands/vocabulary.js is stale: run `npm run build`"


def test_the_generated_module_carries_every_type_and_close_code():
    text = vocabulary.render_js()
    for name in (*vocabulary.EVENT_TYPES, *vocabulary.EPHEMERAL_TYPES, *vocabulary.CONTROL_TYPES):
        assert f'"{name.upper()}": "{name}"' in text
    for name, code in vocabulary.CLOSE_CODES.items():
        assert f'"{name}": {code}' in text


def test_the_event_log_the_socket_and_the_workers_use_the_vocabulary():
    from actors.agents import progress

    assert schema.EVENT_TYPES is vocabulary.EVENT_TYPES
    assert live.EPHEMERAL_TYPES is vocabulary.EPHEMERAL_TYPES
    assert progress.PROGRESS_TYPE == vocabulary.AGENT_TASK_PROGRESS
    # Every code the socket closes with has a reason, and the reasons name no other code.
    sent = set(vocabulary.CLOSE_CODES.values()) - {vocabulary.CLOSE_NORMAL}
    assert set(ws.CLOSE_REASONS) == sent


def test_the_api_reference_lists_exactly_the_vocabularys_message_types_and_close_codes():
    text = DOC.read_text()
    section = text[text.index("## WebSocket") : text.index("## Pages")]
    documented_types = set(re.findall(r'\{type: "([a-z_]+)"', section))
    assert documented_types == set(vocabulary.message_types().values())
    table = text[text.index("### Close codes") :]
    table = table[: table.index("\n## ")]
    documented_codes = {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, flags=re.M)}
    assert documented_codes == set(vocabulary.CLOSE_CODES.values())


def test_no_island_spells_out_a_message_type_or_close_code_of_its_own():
    types = "|".join(vocabulary.message_types().values())
    # 1000 (a normal close) is also a millisecond count; the others mean nothing else.
    codes = "|".join(str(code) for code in vocabulary.CLOSE_CODES.values() if code != vocabulary.CLOSE_NORMAL)
    pattern = re.compile(rf"[\"'`]({types})[\"'`]|\b({codes})\b")
    offenders = []
    for path in sorted(ISLANDS.iterdir()):
        if path.name == "vocabulary.js" or path.suffix not in {".js", ".jsx"}:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//", 1)[0]  # comments may name them
            if pattern.search(code):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "import these from ./vocabulary.js instead:\n" + "\n".join(offenders)
