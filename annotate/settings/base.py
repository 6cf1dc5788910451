"""The web side of the settings (annotate.settings): Django, the database, storage, uploads,
the API, security headers and logging, configured by environment variables (django-environ).
"""

from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A local .env file is a convenience for development; real deployments set the environment.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)
DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-never-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "annotate",
    "labeling_api",
    "worker.apps.WorkerConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # With DEBUG on, only a browser on this machine sees Django's debug pages (annotate.errors).
    "annotate.errors.LocalDebugOnly",
    # Content-Security-Policy on every answer (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    # A 413 for an API request over the size limits, before anything reads its body.
    "labeling_api.middleware.ApiRequestSizeLimit",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The pages in the language the browser asks for (Accept-Language) or the header's switcher.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "annotate.urls"
# Under /api/ a CSRF failure is answered in the API's error shape, elsewhere with Django's page.
CSRF_FAILURE_VIEW = "labeling_api.error_handlers.csrf_failure"
WSGI_APPLICATION = "annotate.wsgi.application"

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# https://docs.djangoproject.com/en/5.2/ref/settings/#databases
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes SQLite's write lock at BEGIN, so two requests that both read then write
    # wait for each other instead of failing with "database is locked" on the upgrade.
    # https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-transaction-behavior
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    # Persistent connections: a new connection per request costs most of a request's time.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # The hot path's statements (annotate.rows) are prepared on their second run in each
    # connection. Set DB_PREPARE_THRESHOLD to an empty value behind a pooler in transaction
    # mode (PgBouncer), which cannot keep prepared statements; Django's own queries never are.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        env.int("DB_PREPARE_THRESHOLD", default=2)
        if env("DB_PREPARE_THRESHOLD", default="2")
        else None
    )
# Each process keeps the projects' serving settings it read (and, with CACHE_TOKEN_OWNERS, the
# API tokens' owners) for this many seconds (annotate.recent): a lease is then one statement
# fewer. A project changed by another process takes effect here at most this much later. 0
# reads them on every request.
READ_CACHE_SECONDS = env.float("READ_CACHE_SECONDS", default=5)
# Whether token owners (the caller's user row: role, active) are kept like the projects above.
# Off by default: every API request then reads its token's owner (one indexed statement, about
# 5% of a lease+vote's CPU as bench/request_cpu.py measured), so a demotion, a deactivation or a
# deleted token applies at the next request in every process. On: up to READ_CACHE_SECONDS
# later in other processes (a refusal still reads the user again, so promotions apply at once).
CACHE_TOKEN_OWNERS = env.bool("CACHE_TOKEN_OWNERS", default=False)
# API tokens older than this many hours stop working (401) and signing in makes a new one;
# 0: tokens last until signed out (POST /api/auth/logout/).
TOKEN_TTL_HOURS = env.float("TOKEN_TTL_HOURS", default=0)
if env("TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "annotate.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# The languages the pages are shipped in (locale/<lang>/LC_MESSAGES); `make check` fails when
# a message is left untranslated (annotate.translations).
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "media/"
# Images and their CNN copies go through Django's storage API: local media by default, any
# S3-compatible object store when S3_BUCKET is set (django-storages; README "Storage").
# https://django-storages.readthedocs.io/en/latest/backends/amazon-S3.html
S3_BUCKET = env("S3_BUCKET", default="")
if S3_BUCKET:
    DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env("S3_ENDPOINT_URL", default="") or None,
            "region_name": env("S3_REGION", default="") or None,
            "access_key": env("S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env("S3_SECRET_ACCESS_KEY", default="") or None,
            "location": env("S3_PREFIX", default=""),
            # Images are served through the API's permission check, never by public URL.
            "default_acl": "private",
            "querystring_auth": True,
            # A second upload of the same name gets its own key instead of overwriting.
            "file_overwrite": False,
        },
    }
else:
    DEFAULT_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES: dict[str, dict[str, Any]] = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Upload limits. Non-file form fields over this are refused by Django (files don't count).
# https://docs.djangoproject.com/en/5.2/ref/settings/#data-upload-max-memory-size
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)
# Uploaded files over this size are streamed to a temporary file, not held in memory.
# https://docs.djangoproject.com/en/5.2/ref/settings/#file-upload-max-memory-size
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("DATA_UPLOAD_MAX_NUMBER_FILES", default=1000)
# The whole body of one upload request: over this, a 413 before any of it is read.
UPLOAD_MAX_REQUEST_BYTES = env.int("UPLOAD_MAX_REQUEST_BYTES", default=2 * 1024**3)
# Per-image caps checked by the ingest service.
IMAGE_MAX_BYTES = env.int("IMAGE_MAX_BYTES", default=50 * 1024 * 1024)
IMAGE_MAX_PIXELS = env.int("IMAGE_MAX_PIXELS", default=64_000_000)
# Zip archives: the sum of the members' sizes and their number (zip bombs are refused whole).
ZIP_MAX_TOTAL_BYTES = env.int("ZIP_MAX_TOTAL_BYTES", default=8 * 1024**3)
ZIP_MAX_MEMBERS = env.int("ZIP_MAX_MEMBERS", default=200_000)
# Perceptual-hash distance (of 64 bits) at or below which an image is flagged as a near
# duplicate of an earlier one. The indexed search is exact up to 3 (annotate.models.ImageHashBand).
NEAR_DUPLICATE_MAX_DISTANCE = env.int("NEAR_DUPLICATE_MAX_DISTANCE", default=3)
if not 0 <= NEAR_DUPLICATE_MAX_DISTANCE <= 3:
    raise ImproperlyConfigured("NEAR_DUPLICATE_MAX_DISTANCE must be between 0 and 3")
# Shorter side of the preprocessed copy the CNN reads.
PREPROCESSED_SHORT_SIDE = env.int("PREPROCESSED_SHORT_SIDE", default=160)
# Longer side of the display copy volunteers and reviewers see (upright, RGB, no metadata).
DISPLAY_MAX_SIDE = env.int("DISPLAY_MAX_SIDE", default=1024)
# Longer over shorter side past which an image is rejected on its header, before any resize.
MAX_ASPECT_RATIO = env.float("MAX_ASPECT_RATIO", default=50.0)

# Proxies in front of the web process that append the client's address to X-Forwarded-For
# (bin/proxy's nginx is one; docker-compose sets 1). 0: the header is ignored and the socket's
# address is the client's. Set it to exactly the proxies there are: one more, and a client
# chooses its own address (labeling_api.client_address).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labeling_api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "labeling_api.exceptions.exception_handler",
    # JSON only (errors too: labeling_api.exceptions); the browsable API while developing.
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        *(["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    ],
    # Guessing passwords or mass-registering: a few tries per minute per client address, on
    # the API and on the sign-in and sign-up pages alike.
    # Per account too: the username tried, whatever the address (labeling_api.throttles).
    "DEFAULT_THROTTLE_RATES": {
        "auth": env("AUTH_THROTTLE_RATE", default="20/min"),
        "auth_account": env("AUTH_ACCOUNT_THROTTLE_RATE", default="10/min"),
    },
    # Throttles key on the address labeling_api.client_address trusts (see TRUSTED_PROXY_COUNT).
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
# Throttle counters are shared by all web processes through the database (a table made by
# migration annotate 0004), so limits hold across processes and nothing depends on Redis.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "labeling_cache",
    }
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Image labeling API",
    "DESCRIPTION": "Crowdsourced image labeling: leases, votes, consensus, review and export.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from static files: the docs page works with no internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Every error answer documented as the one Error shape (labeling_api.exceptions).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "labeling_api.schema.error_responses",
    ],
    # Ids in paths (annotate.converters.IdConverter) are integers of at most 18 digits.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999}
    },
    # Several models have a `state`; name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "ImageStateEnum": "annotate.models.Image.State",
        "ExportStateEnum": "annotate.models.Export.State",
    },
}

# Content-Security-Policy (django-csp): scripts, styles, images and fonts only from this site,
# no inline script or style, no plugins, no framing. The pages have no inline script or style
# (labeling_api.urls loosens styles for the Swagger page alone, which is not ours); scripts set
# sizes through the CSSOM (element.style), which the policy allows.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

if not DEBUG:
    # Safe defaults behind HTTPS; set SECURE_SSL_REDIRECT=False only when TLS ends elsewhere.
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Behind a proxy that ends TLS, redirecting is the proxy's job; set these where it is ours.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
    # HSTS whenever this process redirects to HTTPS (a year unless set; 0 turns it off).
    SECURE_HSTS_SECONDS = env.int(
        "SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if SECURE_SSL_REDIRECT else 0
    )

# Only bench/volunteer_load.py turns this on, in the server it starts.
BENCH_FLOOR_ENDPOINT = env.bool("BENCH_FLOOR_ENDPOINT", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
