"""The settings, configured by environment variables (django-environ), in two files by
concern: base (Django, database, storage, uploads, API, security, logging) and jobs (Celery,
exports, the ML worker). Django reads this module: DJANGO_SETTINGS_MODULE=annotate.settings.

With no variables set it runs embedded: SQLite, local media and a file-system Celery broker,
all under DATA_DIR. DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis.
"""

from annotate.settings.base import *  # noqa: F403
from annotate.settings.jobs import *  # noqa: F403
