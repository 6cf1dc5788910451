from django.apps import AppConfig


class WorkerConfig(AppConfig):
    name = "worker"
    verbose_name = "Background worker"

    def ready(self) -> None:
        # Make the project's Celery app the current one in every process (web included), so
        # services can send tasks by name without importing this package.
        from worker import celery  # noqa: F401
