"""The knowledge-base brain's playbook: what each role does with the feature and upstream work.

Every function takes the agent's context (feature, the user's session decisions, the outputs
of earlier stages) and returns the role's output: `summary`, `artifacts`, `decisions` (each with a
stable `key`, `based_on_keys` naming upstream decision keys and `based_on_session_decisions`),
`concerns`. Nothing here is random and nothing reads the clock, so the same input gives the
same output.
"""

from __future__ import annotations

from typing import Any

from actors.agents.knowledge import (
    GENERIC_A11Y,
    GENERIC_UI,
    TRAITS,
    USER,
    Entity,
    Trait,
    core_entity,
    match_traits,
    plural,
    preferences,
)

Output = dict[str, Any]


def _decision(
    key: str,
    text: str,
    rationale: str,
    category: str,
    confidence: str = "high",
    based_on: list[str] | None = None,
    user: list[int] | None = None,
) -> dict[str, Any]:
    return {
        "key": key,
        "text": text,
        "rationale": rationale,
        "category": category,
        "confidence": confidence,
        "based_on_keys": sorted(set(based_on or [])),
        "based_on_session_decisions": sorted(set(user or [])),
    }


def _upstream(ctx: dict[str, Any], role: str) -> dict[str, Any]:
    found = ctx.get("upstream", {}).get(role) or {}
    return found.get("output") or {}


def _keys(output: Output, prefix: str = "") -> list[str]:
    return [d["key"] for d in output.get("decisions", []) if d["key"].startswith(prefix)]


def _text(ctx: dict[str, Any]) -> str:
    return f"{ctx.get('feature_name', '')} {ctx.get('description') or ''}"


def _entities(traits: list[Trait], feature_name: str) -> list[Entity]:
    entities: list[Entity] = [USER]
    for trait in traits:
        entities.extend(trait.entities)
    if not traits:
        entities.append(core_entity(feature_name))
    seen: set[str] = set()
    unique = []
    for entity in entities:
        if entity.name not in seen:
            seen.add(entity.name)
            unique.append(entity)
    return unique


def architect(ctx: dict[str, Any]) -> Output:
    """Choose components, patterns and integration points for the feature, and say why."""
    traits = match_traits(_text(ctx))
    prefs, pref_source = preferences(ctx.get("session_decisions", []))
    decisions = []
    components = []
    for trait in traits:
        for component in trait.components:
            name, why = component.name, component.why
            user: list[int] = []
            if component.key == "websocket_gateway" and prefs["realtime_transport"] != "websocket":
                transport = prefs["realtime_transport"]
                name = "Server-sent events stream" if transport == "sse" else "Short polling every 3 s"
                why = f"the session decided against WebSockets ({transport}); {why.split(';')[0]}"
                user = [pref_source["realtime_transport"]]
            if component.key == "fulltext_index" and prefs["search_engine"] == "elasticsearch":
                name, why = "Elasticsearch cluster", "the session chose a dedicated search engine"
                user = [pref_source["search_engine"]]
            components.append({"key": component.key, "name": name, "why": why, "deploy": component.deploy})
            decisions.append(
                _decision(f"architect.component.{component.key}", f"Use {name}", why, "architecture", user=user)
            )
    components.append(
        {
            "key": "primary_database",
            "name": prefs["database"],
            "why": "the system of record for every entity",
            "deploy": "managed instance with daily backups and point-in-time recovery",
        }
    )
    db_user = [pref_source["database"]] if "database" in pref_source else []
    decisions.append(
        _decision(
            "architect.database",
            f"Store the system of record in {prefs['database']}",
            "the session decided it"
            if db_user
            else "relational integrity, transactions and JSON columns in one engine",
            "technology",
            "high" if db_user or prefs["database"] == "postgresql" else "medium",
            user=db_user,
        )
    )
    style = prefs["architecture"]
    decisions.append(
        _decision(
            "architect.style",
            f"Build it as a {style} with a {prefs['api_style'].upper()} API",
            "one deployable keeps the first release simple; module boundaries follow the entities"
            if style == "modular monolith"
            else "the session asked for independently deployable services",
            "architecture",
            "medium",
            user=[pref_source[k] for k in ("architecture", "api_style") if k in pref_source],
        )
    )
    patterns = [{"name": p, "why": why} for t in traits for p, why in t.patterns]
    for pattern in patterns[:3]:
        decisions.append(
            _decision(
                f"architect.pattern.{pattern['name'].split()[0].lower().strip('-/')}",
                f"Apply {pattern['name']}",
                pattern["why"],
                "design",
                "medium",
            )
        )
    entities = _entities(traits, ctx.get("feature_name", ""))
    concerns = [c for t in traits for c in t.concerns]
    if not traits:
        concerns.append("the feature names no known kind of work; the plan is a plain resource, confirm the scope")
    if prefs["database"] == "sqlite" and any(t.key in {"realtime", "analytics"} for t in traits):
        concerns.append("SQLite serialises writers; concurrent real-time or reporting load will queue")
    return {
        "summary": f"Plan for {ctx.get('feature_name')}: "
        + (", ".join(t.title for t in traits) if traits else "a single resource with CRUD")
        + f"; {len(components)} components on {prefs['database']}.",
        "artifacts": {
            "traits": [t.key for t in traits],
            "components": components,
            "patterns": patterns,
            "integration_points": sorted({i for t in traits for i in t.integrations}),
            "domain_model": [
                {"entity": e.name, "fields": [list(f) for f in e.fields], "owner_scoped": e.owner_scoped}
                for e in entities
            ],
            "preferences": prefs,
        },
        "decisions": decisions,
        "concerns": concerns,
    }


def _entity_objs(plan: Output) -> list[Entity]:
    entities = []
    traits_by_entity = {e.name: e for t in _traits_of(plan) for e in t.entities}
    for item in plan.get("artifacts", {}).get("domain_model", []):
        known = traits_by_entity.get(item["entity"]) or (USER if item["entity"] == "user" else None)
        entities.append(
            known
            or Entity(
                item["entity"],
                tuple(tuple(f) for f in item["fields"]),
                owner_scoped=item["owner_scoped"],
                search=("title",) if any(f[0] == "title" for f in item["fields"]) else (),
                order_by="created_at" if any(f[0] == "created_at" for f in item["fields"]) else None,
            )
        )
    return entities


def _traits_of(plan: Output) -> list[Trait]:
    keys = plan.get("artifacts", {}).get("traits", [])
    return [t for t in TRAITS if t.key in keys]


def backend_dev(ctx: dict[str, Any]) -> Output:
    """Derive endpoints and services from the architect's plan."""
    plan = _upstream(ctx, "architect")
    traits = _traits_of(plan)
    entities = _entity_objs(plan)
    prefs = plan.get("artifacts", {}).get("preferences", {})
    endpoints: list[dict[str, Any]] = []
    services = []
    for entity in entities:
        if entity.name == "user":
            continue
        base = f"/{plural(entity.name).replace('_', '-')}"
        guard = "owner only" if entity.owner_scoped else "authenticated"
        endpoints += [
            {
                "method": "GET",
                "path": base,
                "purpose": f"list {plural(entity.name)}",
                "entity": entity.name,
                "auth": guard,
            },
            {
                "method": "POST",
                "path": base,
                "purpose": f"create a {entity.name}",
                "entity": entity.name,
                "auth": guard,
            },
            {
                "method": "GET",
                "path": f"{base}/{{id}}",
                "purpose": f"read one {entity.name}",
                "entity": entity.name,
                "auth": guard,
            },
        ]
        if entity.owner_scoped:
            endpoints.append(
                {
                    "method": "PATCH",
                    "path": f"{base}/{{id}}",
                    "purpose": f"update a {entity.name}",
                    "entity": entity.name,
                    "auth": guard,
                }
            )
        service = "".join(p.capitalize() for p in entity.name.split("_")) + "Service"
        services.append(
            {
                "name": service,
                "entity": entity.name,
                "responsibility": f"validation and persistence of {plural(entity.name)}",
            }
        )
    for trait in traits:
        for method, path, purpose in trait.actions:
            if method == "WS" and prefs.get("realtime_transport", "websocket") != "websocket":
                method, path = ("GET", path.replace("/ws", "") + "/events")
                purpose += f" ({prefs['realtime_transport']})"
            named = next((e.name for e in trait.entities if plural(e.name).replace("_", "-") in path), None)
            endpoints.append(
                {"method": method, "path": path, "purpose": purpose, "entity": named, "auth": "owner only"}
            )
    endpoints.sort(key=lambda e: (e["path"], e["method"]))
    decisions = [
        _decision(
            "backend_dev.api",
            f"Expose {len(endpoints)} {prefs.get('api_style', 'rest').upper()} endpoints over {len(services)} services",
            "one service per entity of the architect's domain model keeps validation next to the data it guards",
            "architecture",
            based_on=_keys(plan, "architect.style"),
        ),
        _decision(
            "backend_dev.errors",
            "Return one JSON error envelope with a machine-readable code",
            "clients handle failures uniformly; tests pin the shape",
            "design",
        ),
    ]
    if any(e["path"].count("{id}") for e in endpoints):
        decisions.append(
            _decision(
                "backend_dev.authz",
                "Check ownership on every {id} route and answer 404 for other users' rows",
                "never confirm that another user's object exists",
                "security",
            )
        )
    for trait in traits:
        for component in trait.components:
            decisions.append(
                _decision(
                    f"backend_dev.integrate.{component.key}",
                    f"Integrate {component.name} behind an adapter interface",
                    "the rest of the code calls our interface, so the provider can be faked in tests and swapped later",
                    "technology",
                    "medium",
                    based_on=[f"architect.component.{component.key}"],
                )
            )
    return {
        "summary": f"{len(endpoints)} endpoints and {len(services)} services for {ctx.get('feature_name')}.",
        "artifacts": {"endpoints": endpoints, "services": services},
        "decisions": decisions,
        "concerns": ["list endpoints need cursor pagination before data grows"]
        + (["webhook handlers must be idempotent"] if any("webhook" in e["path"] for e in endpoints) else []),
    }


SQL_TYPES = {
    "postgresql": {
        "pk": "BIGINT GENERATED ALWAYS AS IDENTITY",
        "int": "INTEGER",
        "text": "TEXT",
        "bool": "BOOLEAN",
        "money": "NUMERIC(12,2)",
        "timestamp": "TIMESTAMPTZ",
        "json": "JSONB",
        "float": "DOUBLE PRECISION",
        "fk": "BIGINT",
    },
    "mysql": {
        "pk": "BIGINT UNSIGNED AUTO_INCREMENT",
        "int": "INT",
        "text": "VARCHAR(255)",
        "bool": "TINYINT(1)",
        "money": "DECIMAL(12,2)",
        "timestamp": "DATETIME(6)",
        "json": "JSON",
        "float": "DOUBLE",
        "fk": "BIGINT UNSIGNED",
    },
    "sqlite": {
        "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "int": "INTEGER",
        "text": "TEXT",
        "bool": "INTEGER",
        "money": "INTEGER",
        "timestamp": "TEXT",
        "json": "TEXT",
        "float": "REAL",
        "fk": "INTEGER",
    },
    "mongodb": {
        "pk": "ObjectId",
        "int": "int",
        "text": "string",
        "bool": "bool",
        "money": "decimal128",
        "timestamp": "date",
        "json": "object",
        "float": "double",
        "fk": "ObjectId",
    },
}


def dba(ctx: dict[str, Any]) -> Output:
    """Derive tables, keys and indexes from the domain model and the endpoints' access paths."""
    plan = _upstream(ctx, "architect")
    api = _upstream(ctx, "backend_dev")
    prefs, pref_source = preferences(ctx.get("session_decisions", []))
    engine = (
        prefs["database"]
        if "database" in pref_source
        else plan.get("artifacts", {}).get("preferences", {}).get("database", "postgresql")
    )
    types = SQL_TYPES[engine]
    entities = _entity_objs(plan)
    paths = [e["path"] for e in api.get("artifacts", {}).get("endpoints", [])]
    tables: list[dict[str, Any]] = []
    indexes: list[dict[str, Any]] = []
    for entity in entities:
        table = plural(entity.name)
        columns: list[dict[str, Any]] = [{"name": "id", "type": types["pk"], "key": "primary"}]
        for name, kind in entity.fields:
            if kind.startswith("fk:"):
                target = plural(kind[3:])
                columns.append({"name": name, "type": types["fk"], "key": f"foreign -> {target}.id", "null": False})
                indexes.append({"table": table, "columns": [name], "why": f"joins and ON DELETE from {target}"})
            else:
                columns.append(
                    {"name": name, "type": types[kind], "null": kind in {"json", "timestamp"} and name != "created_at"}
                )
        tables.append({"name": table, "entity": entity.name, "columns": columns})
        if entity.unique:
            indexes.append({"table": table, "columns": list(entity.unique), "unique": True, "why": "business key"})
        if entity.order_by:
            scope = next((n for n, k in entity.fields if k.startswith("fk:")), None)
            cols = [scope, entity.order_by, "id"] if scope else [entity.order_by, "id"]
            listed = [p for p in paths if plural(entity.name).replace("_", "-") in p]
            indexes.append(
                {"table": table, "columns": cols, "why": f"cursor pagination for {', '.join(listed[:2]) or 'lists'}"}
            )
        if entity.search:
            if engine == "postgresql":
                how = "GIN index on to_tsvector(" + " || ' ' || ".join(entity.search) + ")"
            elif engine == "mysql":
                how = "FULLTEXT index (InnoDB)"
            elif engine == "sqlite":
                how = f"FTS5 virtual table {table}_fts kept in sync by triggers"
            else:
                how = "text index"
            indexes.append(
                {"table": table, "columns": list(entity.search), "kind": "fulltext", "how": how, "why": "search"}
            )
    decisions = [
        _decision(
            "dba.engine",
            f"Target {engine} ({'FTS5, WAL journal, one writer' if engine == 'sqlite' else 'InnoDB, utf8mb4' if engine == 'mysql' else 'identity keys, JSONB, GIN' if engine == 'postgresql' else 'document collections'})",
            "the session decided the database"
            if "database" in pref_source
            else "the architect's choice of system of record",
            "technology",
            based_on=_keys(plan, "architect.database"),
            user=[pref_source["database"]] if "database" in pref_source else [],
        ),
        _decision(
            "dba.keys",
            "Surrogate integer keys, foreign keys with explicit ON DELETE, unique business keys",
            "stable joins; the database, not the code, keeps references valid",
            "data",
            based_on=_keys(plan, "architect.style"),
        ),
        _decision(
            "dba.indexes",
            f"Create {len(indexes)} indexes chosen from the endpoints' access paths",
            "every list endpoint reads by owner and time; every foreign key is joined",
            "performance",
            based_on=_keys(api, "backend_dev.api"),
        ),
    ]
    money = [
        t["name"] for t in tables if any(c["name"] in {"amount", "price", "total", "unit_price"} for c in t["columns"])
    ]
    if money:
        decisions.append(
            _decision(
                "dba.money",
                f"Store money as {'integer minor units' if engine == 'sqlite' else 'fixed-point decimals'} in {', '.join(money)}",
                "floating point cannot represent cents exactly",
                "data",
                based_on=_keys(plan, "architect.component.payment_provider"),
            )
        )
    concerns = []
    if engine == "sqlite":
        concerns.append("SQLite allows one writer at a time; keep transactions short and enable WAL")
    if engine == "mongodb":
        concerns.append("without foreign keys, referential integrity moves into application code")
    return {
        "summary": f"{len(tables)} tables and {len(indexes)} indexes on {engine}.",
        "artifacts": {"engine": engine, "tables": tables, "indexes": indexes, "migrations": ["0001_initial"]},
        "decisions": decisions,
        "concerns": concerns,
    }


def frontend_dev(ctx: dict[str, Any]) -> Output:
    """Routes and components from the endpoints, in the session's frontend framework."""
    plan = _upstream(ctx, "architect")
    api = _upstream(ctx, "backend_dev")
    prefs = plan.get("artifacts", {}).get("preferences", {})
    framework = prefs.get("frontend", "react")
    traits = _traits_of(plan)
    endpoints = api.get("artifacts", {}).get("endpoints", [])
    routes = []
    for endpoint in endpoints:
        if endpoint["method"] != "GET" or endpoint["path"].startswith(("/webhooks", "/ws")):
            continue
        path = endpoint["path"].replace("{id}", ":id")
        view = "".join(p.capitalize() for p in path.replace(":id", "detail").replace("-", "/").split("/") if p) + "Page"
        routes.append({"path": path, "component": view, "loads": f"GET {endpoint['path']}"})
    forms = [
        {
            "component": "".join(p.capitalize() for p in e["entity"].split("_")) + "Form",
            "submits": f"{e['method']} {e['path']}",
        }
        for e in endpoints
        if e["method"] in {"POST", "PATCH"} and e.get("entity") and "{id}/" not in e["path"]
    ]
    components = sorted({c for t in traits for c in t.ui} or set(GENERIC_UI))
    live = [e for e in endpoints if e["method"] == "WS" or e["path"].endswith("/events")]
    decisions = [
        _decision(
            "frontend_dev.framework",
            f"Build the views as {framework} components"
            + (" (islands in server-rendered pages)" if framework == "react" else ""),
            "keeps pages fast to load while the interactive parts stay componentised",
            "technology",
            "medium",
            based_on=_keys(plan, "architect.style"),
        ),
        _decision(
            "frontend_dev.api_client",
            f"One typed API client covering the {len(endpoints)} endpoints",
            "errors and auth are handled in one place; views never build URLs by hand",
            "design",
            based_on=_keys(api, "backend_dev.api") + _keys(api, "backend_dev.errors"),
        ),
    ]
    if live:
        decisions.append(
            _decision(
                "frontend_dev.live",
                f"Subscribe to {live[0]['path']} and reconcile with the last seen cursor on reconnect",
                "updates appear without reloads and nothing is lost across reconnects",
                "user_experience",
                based_on=_keys(plan, "architect.component.websocket_gateway")
                + _keys(api, "backend_dev.integrate.websocket_gateway"),
            )
        )
    return {
        "summary": f"{len(routes)} routes, {len(forms)} forms and {len(components)} shared components in {framework}.",
        "artifacts": {"framework": framework, "routes": routes, "forms": forms, "components": components},
        "decisions": decisions,
        "concerns": ["optimistic updates need a rollback path on server errors"] if forms else [],
    }


def ui_ux(ctx: dict[str, Any]) -> Output:
    """Screens, user flows and accessibility checks for the routes and actions upstream."""
    plan = _upstream(ctx, "architect")
    api = _upstream(ctx, "backend_dev")
    traits = _traits_of(plan)
    endpoints = api.get("artifacts", {}).get("endpoints", [])
    screens = []
    for endpoint in endpoints:
        if endpoint["method"] == "GET" and not endpoint["path"].startswith(("/webhooks", "/ws")):
            kind = "detail" if endpoint["path"].endswith("{id}") else "list"
            screens.append(
                {
                    "name": f"{endpoint['entity'] or endpoint['path'].strip('/')} {kind}",
                    "path": endpoint["path"],
                    "states": ["loading", "empty", "error", "ready"],
                }
            )
    flows = [{"name": name, "steps": list(steps)} for t in traits for name, steps in t.flows]
    for endpoint in endpoints:
        if endpoint["method"] == "POST" and endpoint.get("entity") and "{id}" not in endpoint["path"]:
            flows.append(
                {
                    "name": endpoint["purpose"].capitalize(),
                    "steps": ["open the form", "fill it in", "submit", "see the result or inline errors"],
                }
            )
    checks = list(GENERIC_A11Y) + [c for t in traits for c in t.a11y]
    decisions = [
        _decision(
            "ui_ux.states",
            "Design loading, empty, error and ready states for every screen",
            "the empty and error states are what new users see first",
            "user_experience",
            based_on=_keys(api, "backend_dev.api"),
        ),
        _decision(
            "ui_ux.wcag",
            f"Hold every screen to WCAG 2.1 AA with {len(checks)} explicit checks",
            "accessibility is cheaper designed in than retrofitted",
            "user_experience",
        ),
    ]
    if any(t.key == "realtime" for t in traits):
        decisions.append(
            _decision(
                "ui_ux.connection",
                "Show a quiet banner while the live connection is down",
                "users must know when what they see may be stale",
                "user_experience",
                "medium",
                based_on=_keys(plan, "architect.component.websocket_gateway"),
            )
        )
    return {
        "summary": f"{len(screens)} screens, {len(flows)} flows, {len(checks)} accessibility checks.",
        "artifacts": {"screens": screens, "flows": flows, "accessibility_checks": checks},
        "decisions": decisions,
        "concerns": ["usability test the main flow with five users before launch"],
    }


def security(ctx: dict[str, Any]) -> Output:
    """A threat list tied to the concrete endpoints and tables produced upstream, with mitigations."""
    plan = _upstream(ctx, "architect")
    api = _upstream(ctx, "backend_dev")
    schema = _upstream(ctx, "dba")
    traits = _traits_of(plan)
    endpoints = api.get("artifacts", {}).get("endpoints", [])
    tables = schema.get("artifacts", {}).get("tables", [])
    threats = []
    for endpoint in endpoints:
        target = f"{endpoint['method']} {endpoint['path']}"
        if "{id}" in endpoint["path"] and endpoint.get("auth") == "owner only":
            threats.append(
                {
                    "threat": "Insecure direct object reference",
                    "target": target,
                    "severity": "high",
                    "mitigation": "scope the query by the caller's id; answer 404, not 403",
                }
            )
        if endpoint["method"] in {"POST", "PATCH"}:
            threats.append(
                {
                    "threat": "Cross-site request forgery / mass assignment",
                    "target": target,
                    "severity": "medium",
                    "mitigation": "SameSite cookies plus Origin check; accept only whitelisted fields",
                }
            )
    for table in tables:
        for column in table["columns"]:
            if column["name"] in {"password_hash", "token_hash", "key_hash"}:
                threats.append(
                    {
                        "threat": "Credential material at rest",
                        "target": f"table {table['name']}.{column['name']}",
                        "severity": "high",
                        "mitigation": "slow salted hash only; never log; restrict column grants",
                    }
                )
            elif column["name"] in {"email", "latitude", "provider_ref"}:
                threats.append(
                    {
                        "threat": "Personal data exposure",
                        "target": f"table {table['name']}.{column['name']}",
                        "severity": "medium",
                        "mitigation": "exclude from logs and exports; encrypt backups",
                    }
                )
    for trait in traits:
        for threat in trait.threats:
            kind, _, needle = threat.applies_to.partition(":")
            if kind == "endpoint":
                targets = [f"{e['method']} {e['path']}" for e in endpoints if e["method"] == needle]
            elif kind == "path":
                targets = [f"{e['method']} {e['path']}" for e in endpoints if needle in e["path"]]
            elif kind == "table":
                targets = [
                    f"table {t['name']}.{needle}" for t in tables if any(c["name"] == needle for c in t["columns"])
                ]
            else:
                targets = [trait.title]
            for target in targets[:3]:
                threats.append(
                    {
                        "threat": threat.title,
                        "target": target,
                        "severity": threat.severity,
                        "mitigation": threat.mitigation,
                    }
                )
    high = sum(1 for t in threats if t["severity"] == "high")
    decisions = [
        _decision(
            "security.authz",
            f"Block release until the {sum(1 for t in threats if t['threat'].startswith('Insecure'))} object-reference checks have tests",
            "broken access control is the most common serious web flaw (OWASP A01)",
            "security",
            based_on=_keys(api, "backend_dev.authz"),
        ),
        _decision(
            "security.data",
            f"Protect sensitive columns in {len({t['target'].split('.')[0] for t in threats if t['target'].startswith('table')})} tables",
            "hashes and personal data are what attackers take from a leaked backup",
            "security",
            based_on=_keys(schema, "dba.keys"),
        ),
    ]
    for trait in traits:
        for threat in trait.threats[:1]:
            decisions.append(
                _decision(
                    f"security.{threat.key}",
                    f"Mitigate {threat.title.lower()}: {threat.mitigation}",
                    f"{threat.severity} severity for {trait.title}",
                    "security",
                    "high" if threat.severity == "high" else "medium",
                    based_on=[f"architect.component.{c.key}" for c in trait.components[:1]],
                )
            )
    return {
        "summary": f"{len(threats)} threats ({high} high) across {len(endpoints)} endpoints and {len(tables)} tables.",
        "artifacts": {"threats": threats},
        "decisions": decisions,
        "concerns": [f"{high} high-severity threats need tests before release"] if high else [],
    }


def it_admin(ctx: dict[str, Any]) -> Output:
    """A deployment plan for the components and database chosen upstream."""
    plan = _upstream(ctx, "architect")
    schema = _upstream(ctx, "dba")
    prefs = plan.get("artifacts", {}).get("preferences", {})
    engine = schema.get("artifacts", {}).get("engine", prefs.get("database", "postgresql"))
    target = prefs.get("deployment", "containers")
    components = plan.get("artifacts", {}).get("components", [])
    units = [{"name": "web", "runs": "the web app", "replicas": 2 if engine != "sqlite" else 1}]
    if any(c["key"] in {"job_queue", "av_scanner", "webhook_dispatcher", "materialized_views"} for c in components):
        units.append({"name": "worker", "runs": "background jobs", "replicas": 2})
    for component in components:
        units.append({"name": component["key"], "runs": component["name"], "notes": component["deploy"]})
    backups = (
        "copy the SQLite file with the online backup API every hour to object storage"
        if engine == "sqlite"
        else f"daily {engine} snapshot plus point-in-time recovery, restore tested monthly"
    )
    decisions = [
        _decision(
            "it_admin.target",
            f"Deploy on {target}"
            + (" (one host: SQLite cannot be shared between machines)" if engine == "sqlite" else ""),
            "the session decided it"
            if target != "containers"
            else "containers give the same artefact in every environment",
            "infrastructure",
            based_on=_keys(plan, "architect.style") + _keys(schema, "dba.engine"),
        ),
        _decision(
            "it_admin.backups",
            backups[0].upper() + backups[1:],
            "the database is the system of record",
            "infrastructure",
            based_on=_keys(schema, "dba.engine"),
        ),
        _decision(
            "it_admin.observability",
            f"Health checks, structured logs and alerts for {len(units)} units",
            "a failing component must page someone before users notice",
            "process",
            "medium",
        ),
    ]
    return {
        "summary": f"{len(units)} deployment units on {target} with {engine}.",
        "artifacts": {
            "target": target,
            "units": units,
            "backups": backups,
            "pipeline": ["lint", "test", "build image", "migrate", "deploy web and worker", "smoke test /health"],
            "environment": sorted(
                {"DATABASE_URL", "SECRET_KEY"}
                | (
                    {"REDIS_URL"}
                    if any("redis" in c["name"].lower() or c["key"] == "session_store" for c in components)
                    else set()
                )
            ),
        },
        "decisions": decisions,
        "concerns": ["SQLite cannot scale out the web tier"] if engine == "sqlite" else [],
    }


PLAYBOOK = {
    "architect": architect,
    "backend_dev": backend_dev,
    "dba": dba,
    "frontend_dev": frontend_dev,
    "ui_ux": ui_ux,
    "security": security,
    "it_admin": it_admin,
}
