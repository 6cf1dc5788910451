"""The transactional outbox of background tasks."""

from django.db import models


class QueuedJob(models.Model):
    """A background task waiting to reach the broker (a transactional outbox).

    Written in the transaction that asks for the work, so the work is never lost: sent right
    after the commit when the broker is up, else by the periodic flush once it is back.
    """

    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.task_name}{tuple(self.args)}"
