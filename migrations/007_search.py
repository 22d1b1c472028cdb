"""Search: one document per searchable thing, and a vocabulary with a trigram index for typos.

Reviewed by hand. `GET /search` (`models/search.py`) reads only `search_documents`: a row per
feature (session), session decision and agent decision, with its team, role, category, date,
text and a stored `tsvector`, so a search never joins the busy tables nor recomputes a vector.
Typos are corrected first against `search_words`, the distinct words of every document,
through a `pg_trgm` trigram (GiST) index, nearest first: a table of words stays small however many decisions there
are. Triggers keep both current: statement-level on INSERT (one statement per INSERT, whatever
its number of rows), row-level on UPDATE only when a searched text really changes, so the
pipeline's frequent updates of sessions (stage, status, `last_seq`) cost nothing here. Rows
go with their session (ON DELETE CASCADE). `pg_trgm` ships with PostgreSQL and is a trusted
extension (13+), so the database owner may create it.
"""

from __future__ import annotations

import peewee as pw
from peewee_migrate import Migrator

# The words, plus scope lexemes (`t:<team>`, `k:<kind>`, `r:<role>`, `c:<category>`) that no text
# can produce, so that the caller's teams and filters are part of the GIN lookup itself: a common
# word in another team, or under another filter, costs nothing to rule out.
VECTOR = (
    "to_tsvector('english', coalesce({title}, '') || ' ' || coalesce({body}, ''))"
    " || array_to_tsvector(array_remove(ARRAY['t:' || team_id, 'k:' || kind, 'r:' || agent_role,"
    " 'c:' || category], NULL))"
)
WORDS = "tsvector_to_array(to_tsvector('simple', coalesce({title}, '') || ' ' || coalesce({body}, '')))"

# kind -> (SELECT of the documents of the rows in `rows`, the source table, its UPDATE condition)
SOURCES = {
    "feature": (
        """SELECT 'feature', r.id, NULL::bigint, r.team_id, NULL, NULL, r.started_at, r.feature_name, r.description
           FROM {rows} r""",
        "execution_sessions",
        "OLD.feature_name IS DISTINCT FROM NEW.feature_name OR OLD.description IS DISTINCT FROM NEW.description",
    ),
    "session_decision": (
        """SELECT 'session_decision', r.session_id, r.id, s.team_id, NULL, r.category, r.created_at,
                  r.decision_text, NULL
           FROM {rows} r JOIN execution_sessions s ON s.id = r.session_id""",
        "session_decisions",
        "OLD.decision_text IS DISTINCT FROM NEW.decision_text OR OLD.category IS DISTINCT FROM NEW.category",
    ),
    "agent_decision": (
        """SELECT 'agent_decision', t.session_id, r.id, s.team_id, t.agent_role, r.category, r.created_at,
                  r.decision_text, r.rationale
           FROM {rows} r JOIN agent_tasks t ON t.id = r.agent_task_id JOIN execution_sessions s ON s.id = t.session_id""",
        "task_decisions",
        "OLD.decision_text IS DISTINCT FROM NEW.decision_text OR OLD.rationale IS DISTINCT FROM NEW.rationale"
        " OR OLD.category IS DISTINCT FROM NEW.category",
    ),
}


def index_rows(kind: str, rows: str, only_new_words: bool = False) -> str:
    """SQL that adds the documents (and their words) of `rows`, a table or transition table.

    `only_new_words` (migration 008): words already known are left out before the insert, which
    otherwise probes the word's unique index once per word only to skip it."""
    select = SOURCES[kind][0].format(rows=rows)
    known = " AND NOT EXISTS (SELECT 1 FROM search_words k WHERE k.word = w)" if only_new_words else ""
    return f"""
        WITH docs (kind, session_id, decision_id, team_id, agent_role, category, created_at, title, body) AS (
            {select}
        ), added AS (
            INSERT INTO search_documents
                (kind, session_id, decision_id, team_id, agent_role, category, created_at, title, body, tsv)
            SELECT kind, session_id, decision_id, team_id, agent_role, category, created_at, title, body,
                   {VECTOR.format(title="title", body="body")}
            FROM docs
            RETURNING title, body
        )
        INSERT INTO search_words (word)
        SELECT DISTINCT w FROM added, unnest({WORDS.format(title="title", body="body")}) AS w
        WHERE length(w) BETWEEN 2 AND 64 AND w !~ '^[0-9]+$'{known}
        ON CONFLICT (word) DO NOTHING
    """


def _function(kind: str) -> str:
    return f"search_index_{kind}"


def functions(kind: str, only_new_words: bool = False) -> list[str]:
    """The trigger functions of `kind`: on insert, and on a changed text (which replaces its
    document; the new row is indexed as on insert)."""
    function = _function(kind)
    ref = "session_id" if kind == "feature" else "decision_id"
    return [
        f"""
            CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {index_rows(kind, "new_rows", only_new_words)};
                RETURN NULL;
            END $$
            """,
        f"""
            CREATE OR REPLACE FUNCTION {function}_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM search_documents WHERE kind = '{kind}' AND {ref} = NEW.id;
                {index_rows(kind, "(SELECT NEW.*)", only_new_words)};
                RETURN NULL;
            END $$
            """,
    ]


def migrate(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Extension, tables, indexes, triggers, then the documents of what is already stored."""
    migrator.sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    migrator.sql('CREATE TABLE "search_words" ("word" VARCHAR(64) NOT NULL PRIMARY KEY)')
    # GiST, not GIN: it answers "the nearest words first" (`ORDER BY word <-> q`) from the index.
    migrator.sql('CREATE INDEX "idx_search_words_trgm" ON "search_words" USING gist ("word" gist_trgm_ops)')
    migrator.sql(
        """
        CREATE TABLE "search_documents" (
            "id" BIGSERIAL NOT NULL PRIMARY KEY,
            "kind" VARCHAR(20) NOT NULL CONSTRAINT "ck_search_documents_kind"
                CHECK (kind IN ('feature', 'session_decision', 'agent_decision')),
            "session_id" BIGINT NOT NULL,
            "decision_id" BIGINT,
            "team_id" BIGINT NOT NULL,
            "agent_role" VARCHAR(50),
            "category" VARCHAR(50),
            "created_at" TIMESTAMP NOT NULL,
            "title" TEXT NOT NULL,
            "body" TEXT,
            "tsv" TSVECTOR NOT NULL,
            FOREIGN KEY ("session_id") REFERENCES "execution_sessions" ("id") ON DELETE CASCADE
        )
        """
    )
    migrator.sql('CREATE INDEX "idx_search_documents_tsv" ON "search_documents" USING gin ("tsv")')
    migrator.sql('CREATE INDEX "idx_search_documents_team_id" ON "search_documents" ("team_id", "id")')
    migrator.sql('CREATE INDEX "idx_search_documents_session" ON "search_documents" ("session_id")')
    migrator.sql(
        'CREATE UNIQUE INDEX "uq_search_documents_kind_ref" ON "search_documents" '
        '("kind", COALESCE("decision_id", "session_id"))'
    )
    for kind, (_, table, changed) in SOURCES.items():
        function = _function(kind)
        for statement in functions(kind):
            migrator.sql(statement)
        migrator.sql(
            f'CREATE TRIGGER "{function}_insert" AFTER INSERT ON "{table}" '
            f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
        migrator.sql(
            f'CREATE TRIGGER "{function}_update" AFTER UPDATE ON "{table}" FOR EACH ROW '
            f"WHEN ({changed}) EXECUTE FUNCTION {function}_change()"
        )
        migrator.sql(index_rows(kind, f'"{table}"'))


def rollback(migrator: Migrator, database: pw.Database, *, fake: bool = False) -> None:
    """Drop the triggers, functions and tables (the extension stays)."""
    for kind, (_, table, _) in SOURCES.items():
        function = _function(kind)
        migrator.sql(f'DROP TRIGGER IF EXISTS "{function}_insert" ON "{table}"')
        migrator.sql(f'DROP TRIGGER IF EXISTS "{function}_update" ON "{table}"')
        migrator.sql(f"DROP FUNCTION IF EXISTS {function}()")
        migrator.sql(f"DROP FUNCTION IF EXISTS {function}_change()")
    migrator.sql('DROP TABLE IF EXISTS "search_documents"')
    migrator.sql('DROP TABLE IF EXISTS "search_words"')
