"""Settings shared by every environment, configured from the environment.

Two shapes of the same product:
- embedded default (no DATABASE_URL, no REDIS_URL): SQLite, in-memory channel layer,
  local-memory cache, Celery tasks run in-process after commit;
- full stack: PostgreSQL, and Redis for cache, channel layer and broker, each on its
  own database number.
"""

from datetime import timedelta
from pathlib import Path

import environ

from scheduling.observability.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-key-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "django_htmx",
    "axes",
    "scheduling",
]

MIDDLEWARE = [
    # First: its duration and query count cover every other middleware too.
    "scheduling.observability.middleware.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a sign-in refused by axes into the lockout page (scheduling/signin.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
# GET /metrics answers `Authorization: Bearer <this>` only; empty turns it off (404).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "scheduling.context_processors.business",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------

SQLITE_PATH = env("SQLITE_PATH", default=str(BASE_DIR / "db.sqlite3"))


def sqlite_database(path: str) -> dict:
    # IMMEDIATE takes the write lock at BEGIN, so two booking transactions can never
    # both pass the overlap pre-check: SQLite serialises writers for us.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def postgres_database(url: str) -> dict:
    database = env.db_url_config(url)
    # Django's backend with psycopg's C parser for timestamptz values (config/postgresql).
    database["ENGINE"] = "config.postgresql"
    # Persistent connections, checked before reuse so a restarted server is survived.
    database["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
    database["CONN_HEALTH_CHECKS"] = True
    # The few hand-written statements every request runs are prepared once a connection
    # (config/postgresql `prepared_cursor`); a pooler in transaction mode cannot keep them.
    if not env.bool("PG_PREPARED_STATEMENTS", default=True):
        database.setdefault("OPTIONS", {})["prepare_threshold"] = None
    return database


DATABASE_URL = env("DATABASE_URL", default="")
DATABASES = {
    "default": postgres_database(DATABASE_URL) if DATABASE_URL else sqlite_database(SQLITE_PATH)
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "scheduling.User"

# --- Redis: cache, channel layer, broker on separate database numbers -----------------

REDIS_URL = env("REDIS_URL", default="")


def redis_db_url(url: str, number: int) -> str:
    """The same server as `url`, database `number` (Redis URLs end in /N)."""
    base = url.rstrip("/")
    head, _, tail = base.rpartition("/")
    if head.endswith(":/") or not tail.isdigit():  # no database number in the URL
        head = base
    return f"{head}/{number}"


if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_db_url(REDIS_URL, env.int("REDIS_CACHE_DB", default=1)),
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_db_url(REDIS_URL, env.int("REDIS_CHANNELS_DB", default=2))]},
        },
        # The live stream (scheduling/realtime/consumers.py): Redis pub/sub pushes each event to
        # every realtime process with no round trip per message (the core layer above
        # takes four). It delivers at most once, which the stream makes good from the
        # database. Pub/sub ignores database numbers, so the prefix carries it.
        "stream": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [redis_db_url(REDIS_URL, env.int("REDIS_CHANNELS_DB", default=2))],
                "prefix": f"asgi{env.int('REDIS_CHANNELS_DB', default=2)}",
            },
        },
    }
    CELERY_BROKER_URL = redis_db_url(REDIS_URL, env.int("REDIS_BROKER_DB", default=0))
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    # Embedded default: no broker, so tasks run in this process (enqueued after commit).
    CELERY_TASK_ALWAYS_EAGER = True

CELERY_TASK_EAGER_PROPAGATES = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
# The worker consumes dispatch, notify and default; tasks without a route go to default.
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "scheduling.dispatch.*": {"queue": "dispatch"},
    "scheduling.notify.*": {"queue": "notify"},
}
# One message at a time per process: a slow send never sits on messages another process
# could take, and a process that dies takes at most one unacknowledged message with it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Defaults; the tasks that touch the outside world set tighter limits of their own.
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=120)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=100)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# What a task prints stays output, not a log line (a console message would be one).
CELERY_WORKER_REDIRECT_STDOUTS = False
# Celery's Django fixup closes the database connection around every task unless this is
# set; config/celery.py applies CONN_MAX_AGE instead, as Django does per request.
CELERY_DB_REUSE_MAX = 1000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Tasks are idempotent and claim their rows, so a task cut off by a lost broker connection
# is simply delivered again.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# A request whose transaction committed while Redis is down must not hang on it: the row
# says pending, and the sweep enqueues it once Redis is back.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis hands an unacknowledged message to another worker after this long, so it must
    # outlast the longest countdown (a retry's backoff, NOTIFY_RETRY_MAX_SECONDS).
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    "socket_connect_timeout": 2,
}
# Periodic sweeps (`celery -A config beat`). Each expires after its period, so a backlog of
# sweeps queued while no worker ran collapses into the next one.
CELERY_BEAT_SCHEDULE = {
    "dispatch": {
        "task": "scheduling.dispatch.run",
        "schedule": 30.0,
        "options": {"expires": 30},
    },
    "notifications": {
        "task": "scheduling.sweep.notifications",
        "schedule": 30.0,
        "options": {"expires": 30},
    },
    "reminders": {
        "task": "scheduling.sweep.reminders",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "expire-overdue": {
        "task": "scheduling.sweep.expire_overdue",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Work left open two hours past its end goes on the desk's "needs attention" (issue 13).
    "flag-overdue": {
        "task": "scheduling.sweep.flag_overdue",
        "schedule": 300.0,
        "options": {"expires": 300},
    },
    # Gateway links pending past PAYMENT_RECONCILE_MINUTES are asked about (issue 15).
    "reconcile-payments": {
        "task": "scheduling.sweep.reconcile_payments",
        "schedule": 120.0,
        "options": {"expires": 120},
    },
    "prune": {
        "task": "scheduling.sweep.prune",
        "schedule": 24 * 3600.0,
        "options": {"expires": 3600},
    },
}

# --- Retention (manage.py prune, and the daily "prune" sweep) ---------------------------

RETENTION = {
    # Stream events; a client asking from before what is kept is told to reload.
    "STREAM_DAYS": env.int("STREAM_RETENTION_DAYS", default=30),
    # Dispatch and assignment decisions, raw webhooks.
    "AUDIT_DAYS": env.int("AUDIT_RETENTION_DAYS", default=365),
    # Notifications keep their status; their body, subject and address are cleared.
    "MESSAGE_DAYS": env.int("MESSAGE_RETENTION_DAYS", default=90),
    # Replays of a retried POST are only needed for a day.
    "IDEMPOTENCY_HOURS": env.int("IDEMPOTENCY_RETENTION_HOURS", default=24),
    # Rows per delete: each batch is its own short transaction.
    "BATCH": env.int("RETENTION_BATCH", default=2000),
}

# --- Live stream (websockets) -----------------------------------------------------------

LIVE_STREAM = {
    # Events arriving within this window after a send share the next frame.
    "BATCH_SECONDS": env.float("STREAM_BATCH_MS", default=25) / 1000,
    # A connection this far behind is closed (4008) and catches up from the database.
    "BUFFER_EVENTS": env.int("STREAM_BUFFER_EVENTS", default=2000),
    "PING_SECONDS": env.float("STREAM_PING_SECONDS", default=20),
}

# --- REST API ---------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "scheduling.api.auth.StrictTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["scheduling.api.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["scheduling.api.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "scheduling.api.exceptions.handle",
    "DEFAULT_THROTTLE_CLASSES": [],
    # Throttles mix in scheduling.clientaddr.AddressIdentity; this keeps DRF's own in step.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=None),
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Scheduling API",
    "DESCRIPTION": "Bookings, transport and live updates for a home-service therapy company.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
# Appointment list pages kept per process while the event counter stands still
# (scheduling/api/pagecache.py). SIZE 0 turns it off.
API_PAGE_CACHE = {
    "SIZE": env.int("API_PAGE_CACHE_SIZE", default=256),
    "MAX_AGE_SECONDS": env.float("API_PAGE_CACHE_MAX_AGE", default=60),
}
API_RATE_LIMITS = {
    # name: (requests, seconds)
    "token_ip": (env.int("RATE_TOKEN_PER_IP", default=30), 60),
    "token_username": (env.int("RATE_TOKEN_PER_USERNAME", default=10), 60),
    "appointment_create": (env.int("RATE_APPOINTMENT_CREATE", default=120), 60),
}

# --- Auth, i18n, time -----------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"

# --- Sign-in protection (django-axes; scheduling/signin.py, docs/operations.md) ---------

# How many trusted proxies are in front (DRF's meaning): the client address is then read
# from X-Forwarded-For, for every limit (scheduling/clientaddr.py). Unset: REMOTE_ADDR.
NUM_PROXIES = env.int("NUM_PROXIES", default=None)
AUTHENTICATION_BACKENDS = [
    "scheduling.signin.SignInBackend",  # axes' check first (a subclass: see why there)
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("SIGNIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("SIGNIN_LOCKOUT_MINUTES", default=15))
# Either locks: a username guessed from many places, or one place guessing many names.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "scheduling.clientaddr.client_address"
AXES_LOCKOUT_CALLABLE = "scheduling.signin.locked_out"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Each role lands on its own page (scheduling/views/accounts.py: `home`).
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True
# The business time zone: working hours are wall-clock times here, and every time a
# person reads is shown here. Storage is always UTC.
TIME_ZONE = env("TIME_ZONE", default="Asia/Manila")

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

# --- Business rules that are settings --------------------------------------------------

# Shown in the pages' header and titles.
BUSINESS_NAME = env("BUSINESS_NAME", default="Serenity Home Spa")

SCHEDULING = {
    # How long a therapist has to accept a new booking (never later than its start).
    "RESPONSE_WINDOW_MINUTES": env.int("RESPONSE_WINDOW_MINUTES", default=30),
    # One-way travel, base to client, where no service area says otherwise: the therapist
    # is busy this long before each session and after its buffer, and each transport leg
    # lasts this long (drop-off ends at the start, pick-up begins after the buffer).
    "TRAVEL_ALLOWANCE_MINUTES": env.int("TRAVEL_ALLOWANCE_MINUTES", default=45),
    # Granularity of the start times offered by availability.
    "SLOT_STEP_MINUTES": env.int("SLOT_STEP_MINUTES", default=15),
    # Bookings further ahead than this are almost always a typo in the year.
    "BOOKING_HORIZON_DAYS": env.int("BOOKING_HORIZON_DAYS", default=366),
    # Weekly hours given to new therapists and drivers when none are named.
    "DEFAULT_WORKING_HOURS": env("DEFAULT_WORKING_HOURS", default="09:00-18:00"),
    # Trips join the dispatcher's queue this long before their window starts (a requested
    # pickup at once), so the driver queue reflects who is actually waiting.
    "DISPATCH_HORIZON_MINUTES": env.int("DISPATCH_HORIZON_MINUTES", default=90),
    # The follow-up message goes this long after an appointment is completed.
    "FOLLOW_UP_DELAY_MINUTES": env.int("FOLLOW_UP_DELAY_MINUTES", default=60),
    # Delivery backend per channel (scheduling/notify/): console, email (Django's email
    # backend, so SMTP by EMAIL_BACKEND), twilio, or the fake provider of the tests.
    "NOTIFY_BACKENDS": {
        "sms": env("NOTIFY_SMS_BACKEND", default="scheduling.notify.console.ConsoleBackend"),
        "whatsapp": env(
            "NOTIFY_WHATSAPP_BACKEND", default="scheduling.notify.console.ConsoleBackend"
        ),
        "email": env("NOTIFY_EMAIL_BACKEND", default="scheduling.notify.email.EmailBackend"),
    },
    # Attempts before a notification is marked failed; the backoff between them doubles
    # from the base up to the cap, with jitter.
    "NOTIFY_MAX_ATTEMPTS": env.int("NOTIFY_MAX_ATTEMPTS", default=6),
    "NOTIFY_RETRY_BASE_SECONDS": env.float("NOTIFY_RETRY_BASE_SECONDS", default=30.0),
    "NOTIFY_RETRY_MAX_SECONDS": env.float("NOTIFY_RETRY_MAX_SECONDS", default=900.0),
    # Hard time limit of one delivery task; a worker's claim on a row lasts twice as long.
    "NOTIFY_TIME_LIMIT_SECONDS": env.int("NOTIFY_TIME_LIMIT_SECONDS", default=30),
    # A pending row this long overdue is enqueued again by the sweep (lost in the broker).
    "NOTIFY_STALE_SECONDS": env.float("NOTIFY_STALE_SECONDS", default=120.0),
    # Twilio (SMS and WhatsApp) when its backend is chosen above.
    "TWILIO_ACCOUNT_SID": env("TWILIO_ACCOUNT_SID", default=""),
    "TWILIO_AUTH_TOKEN": env("TWILIO_AUTH_TOKEN", default=""),
    "TWILIO_SMS_FROM": env("TWILIO_SMS_FROM", default=""),
    "TWILIO_WHATSAPP_FROM": env("TWILIO_WHATSAPP_FROM", default=""),
    "TWILIO_API_URL": env("TWILIO_API_URL", default="https://api.twilio.com"),
    # The fake provider keeps its counts in this Redis database so that a test can read
    # what a worker process sent; empty keeps them in the process.
    "FAKE_PROVIDER_URL": env("FAKE_PROVIDER_URL", default=""),
}

# --- Payments (issue 15) ----------------------------------------------------------------
# The currency prices and payments are in (ISO 4217); money is Decimal in the database.
CURRENCY = env("CURRENCY", default="PHP")
# Who takes payment links (docs/payments.md): "fake" (links the product pays itself),
# "razorpay" (its official SDK) or "paymongo".
PAYMENT_GATEWAY = env("PAYMENT_GATEWAY", default="fake")
PAYMENTS = {
    # A link not settled after this long is asked about (the reconcile sweep).
    "RECONCILE_MINUTES": env.int("PAYMENT_RECONCILE_MINUTES", default=15),
    "LINK_EXPIRY_HOURS": env.int("PAYMENT_LINK_EXPIRY_HOURS", default=48),
    # Seconds for one call to a gateway.
    "TIMEOUT_SECONDS": env.float("PAYMENT_GATEWAY_TIMEOUT", default=10.0),
    # A PayMongo signature's timestamp may be this far from our clock.
    "WEBHOOK_TOLERANCE_SECONDS": env.int("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", default=300),
    # Where links point and webhooks come back to (the fake gateway posts to it).
    "PUBLIC_URL": env("PUBLIC_URL", default="http://127.0.0.1:8000"),
    "RAZORPAY_KEY_ID": env("RAZORPAY_KEY_ID", default=""),
    "RAZORPAY_KEY_SECRET": env("RAZORPAY_KEY_SECRET", default=""),
    "RAZORPAY_WEBHOOK_SECRET": env("RAZORPAY_WEBHOOK_SECRET", default=""),
    "RAZORPAY_API_URL": env("RAZORPAY_API_URL", default="https://api.razorpay.com"),
    "PAYMONGO_SECRET_KEY": env("PAYMONGO_SECRET_KEY", default=""),
    "PAYMONGO_WEBHOOK_SECRET": env("PAYMONGO_WEBHOOK_SECRET", default=""),
    "PAYMONGO_API_URL": env("PAYMONGO_API_URL", default="https://api.paymongo.com"),
    # The fake gateway signs its webhooks like Razorpay, with this secret.
    "FAKE_WEBHOOK_SECRET": env("FAKE_WEBHOOK_SECRET", default="fake-webhook-secret"),
}

# One handler on stdout (scheduling/observability/logs.py): JSON lines with the request id
# under the full stack, human-readable text in the embedded default; LOG_FORMAT=json|text
# chooses either way (docs/operations.md, "Logs").
LOG_FORMAT = env("LOG_FORMAT", default="json" if REDIS_URL else "text")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env("LOG_LEVEL", default="INFO"))
