"""The built-in knowledge base: feature traits and the components, entities and risks they imply.

Each `Trait` is one kind of feature work ("real-time messaging", "payments"...), recognised by
keywords in the feature's name and description. A trait carries what a team experienced with
that kind of work would reach for, with the reason, so every agent's choice can be explained.
Everything here is data; the role playbooks (`playbook.py`) turn it into decisions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Component:
    key: str
    name: str
    why: str
    deploy: str  # how it runs in production: the note it_admin builds the deployment plan from


@dataclass(frozen=True)
class Entity:
    name: str  # singular snake_case; the table is its plural
    fields: tuple[tuple[str, str], ...]  # (column, kind): kinds text, int, bool, money, timestamp, json, fk:<entity>
    owner_scoped: bool = True  # rows belong to a user: every read must check ownership
    search: tuple[str, ...] = ()  # columns in a full-text index
    order_by: str | None = None  # the column lists are sorted by (gets a composite index)
    unique: tuple[str, ...] = ()  # a unique key
    sensitive: tuple[str, ...] = ()  # columns that need protection at rest


@dataclass(frozen=True)
class Threat:
    key: str
    title: str
    applies_to: str  # "endpoint:<METHOD>" , "path:<fragment>", "table:<column>", "trait"
    mitigation: str
    severity: str = "medium"


@dataclass(frozen=True)
class Trait:
    key: str
    title: str
    keywords: tuple[str, ...]
    components: tuple[Component, ...]
    patterns: tuple[tuple[str, str], ...]  # (pattern, why)
    integrations: tuple[str, ...]
    entities: tuple[Entity, ...]
    actions: tuple[tuple[str, str, str], ...] = ()  # extra endpoints: (method, path, purpose)
    ui: tuple[str, ...] = ()  # frontend components
    a11y: tuple[str, ...] = ()  # accessibility checks
    threats: tuple[Threat, ...] = ()
    concerns: tuple[str, ...] = ()
    flows: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


USER = Entity(
    "user",
    (("email", "text"), ("display_name", "text"), ("password_hash", "text"), ("created_at", "timestamp")),
    owner_scoped=False,
    unique=("email",),
    sensitive=("password_hash", "email"),
)

TRAITS: tuple[Trait, ...] = (
    Trait(
        key="realtime",
        title="real-time messaging",
        keywords=("chat", "real-time", "realtime", "live", "messag", "presence", "collaborat", "websocket"),
        components=(
            Component(
                "websocket_gateway",
                "WebSocket gateway",
                "users expect new messages within a second; polling every second multiplies load by the number of open tabs",
                "runs inside every web process; the load balancer must allow Upgrade and a 60 s idle timeout",
            ),
            Component(
                "redis_pubsub",
                "Redis pub/sub fan-out",
                "a message sent to one web process must reach sockets held by the others; one channel per conversation keeps fan-out cheap",
                "Redis with persistence off for the pub/sub role; one subscriber connection per web process",
            ),
        ),
        patterns=(
            ("publish/subscribe", "senders never wait for receivers and web processes scale independently"),
            (
                "persist-then-publish",
                "a message is stored before it is broadcast, so a reconnecting client can catch up",
            ),
            ("cursor pagination", "history is read newest-first by (sent_at, id); offsets drift while messages arrive"),
        ),
        integrations=("Redis channel per conversation", "WebSocket handshake authenticated by the session cookie"),
        entities=(
            Entity("conversation", (("title", "text"), ("created_by", "fk:user"), ("created_at", "timestamp"))),
            Entity(
                "message",
                (
                    ("conversation_id", "fk:conversation"),
                    ("author_id", "fk:user"),
                    ("body", "text"),
                    ("sent_at", "timestamp"),
                ),
                search=("body",),
                order_by="sent_at",
            ),
        ),
        actions=(("WS", "/ws/conversations/{id}", "live messages of one conversation"),),
        ui=("MessageList (virtualised)", "Composer", "PresenceIndicator", "ConnectionBanner"),
        a11y=(
            "the message list is an aria-live=polite region so screen readers announce new messages",
            "the composer submits with Enter and keeps Shift+Enter for a new line; both are documented in the hint text",
        ),
        threats=(
            Threat(
                "cswsh",
                "Cross-site WebSocket hijacking",
                "endpoint:WS",
                "check the Origin header and authenticate the cookie before accepting the socket",
                "high",
            ),
            Threat(
                "flooding",
                "Message flooding",
                "path:/messages",
                "per-user rate limit on sending and a 4 KB body cap",
            ),
        ),
        concerns=("slow consumers: a socket that cannot keep up must be dropped and resume from its cursor",),
        flows=(
            ("Send a message", ("open the conversation", "type in the composer", "send", "see it appear for everyone")),
        ),
    ),
    Trait(
        key="payments",
        title="payments",
        keywords=("payment", "checkout", "billing", "subscription", "invoice", "refund", "pay "),
        components=(
            Component(
                "payment_provider",
                "Hosted payment provider (Stripe-style) with tokenised cards",
                "card numbers never touch our servers, which keeps us in the smallest PCI DSS scope (SAQ A)",
                "outbound HTTPS to the provider; secrets in the secret store, rotated yearly",
            ),
            Component(
                "webhook_receiver",
                "Signed webhook receiver",
                "payment results arrive asynchronously; the provider's webhook is the source of truth for settlement",
                "a public endpoint behind the load balancer; retried by the provider, so handlers are idempotent",
            ),
        ),
        patterns=(
            ("idempotency keys", "a retried charge request must never charge twice"),
            ("double-entry ledger", "money is moved between accounts, never edited, so totals always reconcile"),
            ("outbox", "the order update and the message to the provider commit together"),
        ),
        integrations=("payment provider API", "provider webhooks (HMAC-signed)"),
        entities=(
            Entity(
                "payment",
                (
                    ("payer_id", "fk:user"),
                    ("amount", "money"),
                    ("currency", "text"),
                    ("status", "text"),
                    ("provider_ref", "text"),
                    ("idempotency_key", "text"),
                    ("created_at", "timestamp"),
                ),
                unique=("idempotency_key",),
                order_by="created_at",
                sensitive=("provider_ref",),
            ),
            Entity(
                "ledger_entry",
                (("payment_id", "fk:payment"), ("account", "text"), ("amount", "money"), ("created_at", "timestamp")),
                owner_scoped=False,
            ),
        ),
        actions=(
            ("POST", "/payments/{id}/refund", "refund a settled payment"),
            ("POST", "/webhooks/payments", "provider settlement callbacks"),
        ),
        ui=("CheckoutForm (provider-hosted card field)", "PaymentStatus", "ReceiptView"),
        a11y=(
            "card fields announce validation errors with aria-describedby, not colour alone",
            "the pay button states the amount and currency in its accessible name",
        ),
        threats=(
            Threat(
                "double_charge",
                "Double charge on retry",
                "path:/payments",
                "require an Idempotency-Key header; unique index on payments.idempotency_key",
                "high",
            ),
            Threat(
                "forged_webhook",
                "Forged settlement webhook",
                "path:/webhooks",
                "verify the HMAC signature and timestamp; reject replays older than 5 minutes",
                "high",
            ),
        ),
        concerns=("refunds and chargebacks need a reconciliation report against the provider",),
        flows=(("Pay", ("review the total", "enter card in the provider field", "confirm", "see the receipt")),),
    ),
    Trait(
        key="search",
        title="search",
        keywords=("search", "find", "filter", "catalog", "catalogue", "lookup", "discover"),
        components=(
            Component(
                "fulltext_index",
                "Full-text index in the primary database",
                "keeps search consistent with writes and avoids running a separate search cluster until volume demands it",
                "no extra service; index maintenance runs with the database's autovacuum",
            ),
        ),
        patterns=(
            ("query object", "filters, sort and paging are parsed once and validated before reaching SQL"),
            ("debounced type-ahead", "the client waits 250 ms after typing before querying"),
        ),
        integrations=("database full-text search",),
        entities=(
            Entity(
                "saved_search",
                (("owner_id", "fk:user"), ("query", "text"), ("filters", "json"), ("created_at", "timestamp")),
            ),
        ),
        actions=(("GET", "/search", "ranked results with filters and cursor paging"),),
        ui=("SearchBox (type-ahead)", "ResultList", "FacetFilters"),
        a11y=(
            "the type-ahead follows the WAI-ARIA combobox pattern with arrow-key navigation",
            "the result count is announced in a live region after each search",
        ),
        threats=(
            Threat(
                "search_injection",
                "Query injection through search filters",
                "path:/search",
                "bind every filter as a parameter; whitelist sortable columns",
            ),
            Threat(
                "search_leak",
                "Search results leaking other users' rows",
                "path:/search",
                "apply the ownership filter inside the search query, not after it",
                "high",
            ),
        ),
        concerns=("ranking quality needs real queries to tune; log anonymised zero-result searches",),
        flows=(("Find something", ("type a query", "refine with filters", "open a result")),),
    ),
    Trait(
        key="files",
        title="file uploads",
        keywords=("upload", "file", "image", "photo", "attachment", "media", "document", "avatar", "video"),
        components=(
            Component(
                "object_storage",
                "S3-compatible object storage",
                "files do not belong in the database; object storage is cheap, durable and serves large bodies directly",
                "a private bucket with lifecycle rules; the app holds a scoped key",
            ),
            Component(
                "presigned_urls",
                "Presigned upload and download URLs",
                "browsers upload straight to storage, so web processes never hold large bodies in memory",
                "URLs expire after 15 minutes; CORS on the bucket allows only our origin",
            ),
            Component(
                "av_scanner",
                "Asynchronous malware scan worker",
                "uploaded files are untrusted until scanned",
                "a background worker consuming an upload-finished queue",
            ),
        ),
        patterns=(
            ("direct-to-storage upload", "keeps web processes small and fast"),
            ("quarantine until scanned", "nothing is downloadable before the scan passes"),
        ),
        integrations=("object storage API", "malware scanner"),
        entities=(
            Entity(
                "file",
                (
                    ("owner_id", "fk:user"),
                    ("storage_key", "text"),
                    ("filename", "text"),
                    ("content_type", "text"),
                    ("size_bytes", "int"),
                    ("scan_status", "text"),
                    ("created_at", "timestamp"),
                ),
                unique=("storage_key",),
                order_by="created_at",
            ),
        ),
        actions=(
            ("POST", "/files/upload-url", "issue a presigned upload URL"),
            ("GET", "/files/{id}/download-url", "issue a presigned download URL"),
        ),
        ui=("DropZone", "UploadProgress", "FileList"),
        a11y=(
            "the drop zone is also a keyboard-focusable button that opens the file picker",
            "upload progress uses role=progressbar with aria-valuenow",
        ),
        threats=(
            Threat(
                "malware",
                "Malware distributed through uploads",
                "path:/files",
                "quarantine until scanned; serve downloads with Content-Disposition: attachment",
                "high",
            ),
            Threat(
                "oversize",
                "Storage exhaustion by huge uploads",
                "path:/upload-url",
                "sign the URL with a content-length-range and a per-user quota",
            ),
        ),
        concerns=("retention: decide how long deleted files are kept before purge",),
        flows=(("Upload a file", ("drop or pick a file", "watch progress", "see it listed once scanned")),),
    ),
    Trait(
        key="auth",
        title="authentication",
        keywords=(
            "auth",
            "login",
            "log in",
            "sign in",
            "signup",
            "sign up",
            "password",
            "account",
            "sso",
            "oauth",
            "2fa",
        ),
        components=(
            Component(
                "session_store",
                "Server-side sessions in Redis",
                "a cookie naming a server-side session can be revoked at once, unlike a long-lived JWT",
                "Redis with AOF persistence so restarts do not log everyone out",
            ),
            Component(
                "password_hasher",
                "bcrypt password hashing (cost 12)",
                "a slow, salted hash resists offline cracking if the table leaks",
                "CPU-bound: size web workers for ~250 ms per login at peak",
            ),
        ),
        patterns=(
            ("rate-limited login", "slows credential stuffing without locking real users out"),
            ("constant-time comparison", "no timing signal reveals whether a username exists"),
        ),
        integrations=("email provider for password reset",),
        entities=(
            Entity(
                "password_reset",
                (("user_id", "fk:user"), ("token_hash", "text"), ("expires_at", "timestamp"), ("used", "bool")),
                unique=("token_hash",),
                sensitive=("token_hash",),
            ),
        ),
        actions=(
            ("POST", "/auth/login", "log in with username or email"),
            ("POST", "/auth/logout", "end the server-side session"),
            ("POST", "/auth/password-reset", "email a single-use reset link"),
        ),
        ui=("LoginForm", "SignupForm", "PasswordResetForm"),
        a11y=(
            "form errors are linked to their inputs with aria-describedby and focus moves to the first error",
            "password fields allow paste so password managers work",
        ),
        threats=(
            Threat(
                "credential_stuffing",
                "Credential stuffing",
                "path:/auth/login",
                "rate-limit by IP and account; generic error messages",
                "high",
            ),
            Threat(
                "session_fixation",
                "Session fixation",
                "path:/auth/login",
                "issue a new session id at login; cookies HttpOnly, Secure, SameSite=Lax",
            ),
        ),
        concerns=("account recovery is the weakest link; reset tokens must be single-use and short-lived",),
        flows=(("Log in", ("enter username or email", "enter password", "land on the dashboard")),),
    ),
    Trait(
        key="analytics",
        title="reporting and analytics",
        keywords=("report", "analytics", "dashboard", "metric", "statistic", "insight", "chart", "export", "kpi"),
        components=(
            Component(
                "read_replica",
                "Read replica for reporting queries",
                "long aggregate queries must not slow down the transactional workload",
                "streaming replica; reports tolerate a few seconds of lag",
            ),
            Component(
                "materialized_views",
                "Materialized views refreshed on a schedule",
                "dashboards read precomputed aggregates in milliseconds instead of scanning raw rows",
                "a scheduled job refreshes them concurrently every 5 minutes",
            ),
        ),
        patterns=(
            ("CQRS-lite", "writes go to the primary, reports read denormalised views"),
            ("asynchronous export", "large CSV exports are built by a worker and downloaded when ready"),
        ),
        integrations=("scheduled refresh job", "CSV export worker"),
        entities=(
            Entity(
                "report",
                (("owner_id", "fk:user"), ("name", "text"), ("definition", "json"), ("created_at", "timestamp")),
                order_by="created_at",
            ),
            Entity(
                "report_export",
                (("report_id", "fk:report"), ("status", "text"), ("storage_key", "text"), ("created_at", "timestamp")),
            ),
        ),
        actions=(
            ("GET", "/reports/{id}/data", "aggregated series for charts"),
            ("POST", "/reports/{id}/exports", "start an asynchronous CSV export"),
        ),
        ui=("ChartPanel", "DateRangePicker", "ExportButton"),
        a11y=(
            "every chart has a data table alternative and a text summary",
            "colour palettes pass WCAG AA contrast and do not rely on red/green alone",
        ),
        threats=(
            Threat(
                "csv_injection",
                "Formula injection in CSV exports",
                "path:/exports",
                "prefix cells starting with = + - @ with a quote",
            ),
            Threat(
                "expensive_query",
                "Denial of service through expensive report ranges",
                "path:/data",
                "cap date ranges, time out queries at 10 s on the replica",
            ),
        ),
        concerns=("metric definitions must be agreed with stakeholders before building charts",),
        flows=(("Read a report", ("pick a date range", "read the charts", "export as CSV")),),
    ),
    Trait(
        key="notifications",
        title="notifications",
        keywords=("notif", "email", "alert", "reminder", "digest", "push", "sms"),
        components=(
            Component(
                "job_queue",
                "Background job queue for delivery",
                "sending email or push must not block the request that caused it, and failures need retries",
                "worker processes beside the web; dead-letter queue monitored",
            ),
            Component(
                "email_provider",
                "Transactional email provider",
                "deliverability (SPF, DKIM, bounces) is a specialist's job",
                "API key in the secret store; bounce webhook enabled",
            ),
        ),
        patterns=(
            ("user preferences per channel", "users choose what reaches them, which keeps unsubscribe rates down"),
            ("digest batching", "many events become one email instead of a flood"),
        ),
        integrations=("email provider API", "bounce webhooks"),
        entities=(
            Entity(
                "notification",
                (
                    ("recipient_id", "fk:user"),
                    ("kind", "text"),
                    ("payload", "json"),
                    ("read_at", "timestamp"),
                    ("created_at", "timestamp"),
                ),
                order_by="created_at",
            ),
            Entity(
                "notification_preference",
                (("user_id", "fk:user"), ("channel", "text"), ("enabled", "bool")),
                unique=("user_id", "channel"),
            ),
        ),
        actions=(("POST", "/notifications/{id}/read", "mark one notification read"),),
        ui=("NotificationBell", "NotificationList", "PreferenceToggles"),
        a11y=("the unread count is part of the bell's accessible name", "toggles are real checkboxes with labels"),
        threats=(
            Threat(
                "email_header_injection",
                "Email header injection",
                "trait",
                "never put user input in headers; use the provider's structured API",
            ),
        ),
        concerns=("legal: marketing email needs consent records, transactional email does not",),
        flows=(("Manage notifications", ("open the bell", "read or mark read", "adjust preferences")),),
    ),
    Trait(
        key="scheduling",
        title="scheduling and bookings",
        keywords=("schedul", "booking", "calendar", "appointment", "reservation", "slot", "availability"),
        components=(
            Component(
                "exclusion_constraint",
                "Database-enforced non-overlapping bookings",
                "two people booking the same slot at the same moment must not both succeed; only the database can guarantee it",
                "no extra service",
            ),
            Component(
                "timezone_library",
                "IANA time zone handling",
                "slots are stored in UTC and shown in the viewer's zone; daylight saving shifts break naive arithmetic",
                "tzdata updated with the OS image",
            ),
        ),
        patterns=(
            ("optimistic hold", "a slot is held for 10 minutes while the user confirms"),
            ("UTC storage", "one unambiguous time line for every user"),
        ),
        integrations=("iCalendar (.ics) export",),
        entities=(
            Entity(
                "slot",
                (("resource", "text"), ("starts_at", "timestamp"), ("ends_at", "timestamp")),
                owner_scoped=False,
                order_by="starts_at",
            ),
            Entity(
                "booking",
                (("slot_id", "fk:slot"), ("customer_id", "fk:user"), ("status", "text"), ("created_at", "timestamp")),
                unique=("slot_id",),
                order_by="created_at",
            ),
        ),
        actions=(("POST", "/bookings/{id}/cancel", "cancel a booking and free the slot"),),
        ui=("CalendarGrid", "SlotPicker", "BookingConfirmation"),
        a11y=(
            "the calendar grid is navigable with arrow keys and announces the date of the focused cell",
            "times are shown with their time zone",
        ),
        threats=(
            Threat(
                "slot_hoarding",
                "Slot hoarding by automated holds",
                "path:/bookings",
                "limit concurrent holds per user and expire them",
            ),
        ),
        concerns=("cancellation policy and no-show handling need a product decision",),
        flows=(("Book a slot", ("pick a date", "pick a free slot", "confirm", "receive a confirmation")),),
    ),
    Trait(
        key="commerce",
        title="catalogue and orders",
        keywords=("shop", "cart", "order", "inventory", "product", "store", "ecommerce", "e-commerce", "stock"),
        components=(
            Component(
                "order_service",
                "Transactional order service",
                "stock reservation and order creation must commit together or not at all",
                "part of the web app; no extra service",
            ),
        ),
        patterns=(
            ("row-level locking for stock", "SELECT ... FOR UPDATE on the stock row prevents overselling"),
            ("order state machine", "orders move pending -> paid -> shipped -> delivered with guarded transitions"),
        ),
        integrations=("shipping rates API",),
        entities=(
            Entity(
                "product",
                (("name", "text"), ("description", "text"), ("price", "money"), ("stock", "int")),
                owner_scoped=False,
                search=("name", "description"),
            ),
            Entity(
                "order",
                (("customer_id", "fk:user"), ("status", "text"), ("total", "money"), ("created_at", "timestamp")),
                order_by="created_at",
            ),
            Entity(
                "order_item",
                (("order_id", "fk:order"), ("product_id", "fk:product"), ("quantity", "int"), ("unit_price", "money")),
                owner_scoped=False,
            ),
        ),
        actions=(("POST", "/orders/{id}/cancel", "cancel an unpaid order and release stock"),),
        ui=("ProductGrid", "CartDrawer", "OrderSummary"),
        a11y=("quantity steppers have labelled buttons and accept typed input", "prices are read with their currency"),
        threats=(
            Threat(
                "price_tampering",
                "Price tampering from the client",
                "path:/orders",
                "compute totals on the server from product prices; never trust client totals",
                "high",
            ),
        ),
        concerns=("taxes and currencies differ by region; pick the launch markets first",),
        flows=(("Place an order", ("browse products", "add to cart", "review the cart", "place the order")),),
    ),
    Trait(
        key="integrations",
        title="public API and webhooks",
        keywords=("api", "webhook", "integration", "import", "sync", "third-party", "partner"),
        components=(
            Component(
                "api_gateway",
                "Versioned public REST API with API keys",
                "partners integrate against a stable, versioned contract with their own credentials",
                "same web processes behind /api/v1; per-key rate limits in Redis",
            ),
            Component(
                "webhook_dispatcher",
                "Outbound webhook dispatcher with retries",
                "partners learn about changes without polling; delivery must survive their downtime",
                "background worker; exponential backoff, disabled after 24 h of failures",
            ),
        ),
        patterns=(("HMAC-signed webhooks", "partners can verify that a callback came from us"),),
        integrations=("partner webhooks",),
        entities=(
            Entity(
                "api_key",
                (("owner_id", "fk:user"), ("prefix", "text"), ("key_hash", "text"), ("created_at", "timestamp")),
                unique=("prefix",),
                sensitive=("key_hash",),
            ),
            Entity(
                "webhook_delivery",
                (("api_key_id", "fk:api_key"), ("event", "text"), ("status", "text"), ("attempts", "int")),
                owner_scoped=False,
            ),
        ),
        actions=(("POST", "/api-keys/{id}/revoke", "revoke an API key"),),
        ui=("ApiKeyList", "WebhookLog"),
        a11y=("copy-to-clipboard buttons announce success in a live region",),
        threats=(
            Threat(
                "key_leak",
                "Leaked API keys",
                "table:key_hash",
                "store only a hash and a prefix; show the key once; allow revocation",
                "high",
            ),
            Threat(
                "ssrf",
                "Server-side request forgery through webhook URLs",
                "path:/api-keys",
                "resolve and block private address ranges before delivering",
                "high",
            ),
        ),
        concerns=("versioning policy: how long v1 is supported after v2 ships",),
    ),
    Trait(
        key="geo",
        title="maps and location",
        keywords=("map", "location", "geo", "gps", "nearby", "delivery", "tracking", "route"),
        components=(
            Component(
                "spatial_index",
                "Spatial index (PostGIS or geohash)",
                "'nearby' queries need an index on location, not a scan with distance maths",
                "PostGIS extension on the primary database",
            ),
            Component(
                "map_tiles",
                "Hosted map tile provider",
                "rendering tiles ourselves is a project of its own",
                "API key restricted by HTTP referrer",
            ),
        ),
        patterns=(("bounding-box then distance", "a cheap index filter first, exact distance on the few survivors"),),
        integrations=("map tile provider", "geocoding API"),
        entities=(
            Entity(
                "place",
                (("owner_id", "fk:user"), ("name", "text"), ("latitude", "float"), ("longitude", "float")),
                search=("name",),
            ),
        ),
        actions=(("GET", "/places/nearby", "places within a radius of a point"),),
        ui=("MapView", "PlaceMarker", "NearbyList"),
        a11y=("everything on the map is also in a list beside it", "map controls are keyboard operable"),
        threats=(
            Threat(
                "location_privacy",
                "Exposure of users' precise locations",
                "table:latitude",
                "round coordinates in public responses; keep precise ones owner-only",
                "high",
            ),
        ),
        concerns=("location data is personal data; retention and consent need a policy",),
    ),
)

GENERIC_UI = ("ListView", "DetailView", "EditForm")
GENERIC_A11Y = (
    "every interactive element is reachable and operable by keyboard with a visible focus ring",
    "text contrast meets WCAG 2.1 AA (4.5:1)",
    "every form input has a programmatic label",
)

STOPWORDS = {"a", "an", "the", "and", "or", "for", "of", "to", "with", "in", "on", "new", "add", "build", "feature"}


def words(text: str) -> list[str]:
    """Lower-case words of `text`."""
    return re.findall(r"[a-z0-9]+", text.lower())


def singular(word: str) -> str:
    """A naive singular: good enough for resource names."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("ses") or word.endswith("xes"):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def plural(word: str) -> str:
    """The table or path name for an entity."""
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


def match_traits(text: str) -> list[Trait]:
    """The traits whose keywords occur in `text`, in the knowledge base's order."""
    lowered = f" {text.lower()} "
    return [trait for trait in TRAITS if any(k in lowered for k in trait.keywords)]


def core_entity(feature_name: str) -> Entity:
    """The feature's own resource when no trait describes it, named after its last real noun."""
    nouns = [w for w in words(feature_name) if w not in STOPWORDS and not w.isdigit()]
    name = singular(nouns[-1]) if nouns else "item"
    return Entity(
        name,
        (
            ("owner_id", "fk:user"),
            ("title", "text"),
            ("details", "text"),
            ("status", "text"),
            ("created_at", "timestamp"),
        ),
        search=("title",),
        order_by="created_at",
    )


# User decisions: phrases in a session decision that set a preference, and the value they set.
PREFERENCE_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("database", "sqlite", ("sqlite",)),
    ("database", "mysql", ("mysql", "mariadb")),
    ("database", "postgresql", ("postgres",)),
    ("database", "mongodb", ("mongo",)),
    ("realtime_transport", "polling", ("no websocket", "without websocket", "polling")),
    ("realtime_transport", "sse", ("server-sent", "sse")),
    ("frontend", "vue", ("vue",)),
    ("frontend", "svelte", ("svelte",)),
    ("frontend", "react", ("react",)),
    ("frontend", "server-rendered", ("no javascript", "server-rendered", "server rendered", "htmx")),
    ("api_style", "graphql", ("graphql",)),
    ("deployment", "kubernetes", ("kubernetes", "k8s")),
    ("deployment", "serverless", ("serverless", "lambda")),
    ("deployment", "single-vm", ("single server", "one server", "single vm", "docker compose")),
    ("architecture", "microservices", ("microservice",)),
    ("search_engine", "elasticsearch", ("elasticsearch", "opensearch")),
)

DEFAULTS = {
    "database": "postgresql",
    "realtime_transport": "websocket",
    "frontend": "react",
    "api_style": "rest",
    "deployment": "containers",
    "architecture": "modular monolith",
    "search_engine": "database",
}


def preferences(session_decisions: list[dict]) -> tuple[dict[str, str], dict[str, int]]:
    """Preferences set by the user's session decisions, and which decision set each (later wins)."""
    prefs = dict(DEFAULTS)
    source: dict[str, int] = {}
    for decision in session_decisions:
        text = f" {decision.get('text', '').lower()} "
        for key, value, phrases in PREFERENCE_RULES:
            if any(p in text for p in phrases):
                if key in source and prefs[key] != value and any(f"not {p}" in text for p in phrases):
                    continue
                prefs[key] = value
                if decision.get("id") is not None:
                    source[key] = decision["id"]
    return prefs, source
