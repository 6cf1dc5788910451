"""The user table: roles and the counters the ranking reads."""

from typing import Any

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import pgettext_lazy

from annotate.usernames import username_key

LOOK_ALIKE_MESSAGE = "That username looks the same as one already taken; choose another."


class User(AbstractUser):
    class Role(models.TextChoices):
        VOLUNTEER = "volunteer", pgettext_lazy("user role", "Volunteer")
        REVIEWER = "reviewer", pgettext_lazy("user role", "Reviewer")
        ADMIN = "admin", pgettext_lazy("user role", "Admin")

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VOLUNTEER)
    # Kept in the vote's transaction so "rank" never counts the votes table.
    votes_count = models.PositiveIntegerField(default=0, db_index=True)
    show_on_leaderboard = models.BooleanField(
        default=False, help_text="Show my name in the volunteers' ranking (hidden by default)."
    )
    # Votes a day the volunteer aims for (shown as "12 of 60 today"); null: no goal set.
    daily_goal = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(10000)]
    )
    # annotate.usernames' key of the username, unique: `ADMIN` or Cyrillic `аdmin` cannot sit
    # beside `admin`. Set on every save of the username. Null only for an account that already
    # shared its key with an older one when the column was added (migration 0018).
    username_key = models.CharField(  # noqa: DJ001 (null: many may lack one, '' only one)
        max_length=600, unique=True, null=True, editable=False
    )

    def clean(self) -> None:
        super().clean()
        key = username_key(self.username)
        if User.objects.filter(username_key=key).exclude(pk=self.pk).exists():
            raise ValidationError({"username": LOOK_ALIKE_MESSAGE}, code="look_alike")

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.username_key = username_key(self.username)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_key"}
        super().save(*args, **kwargs)

    @property
    def is_reviewer(self) -> bool:
        return self.role in (self.Role.REVIEWER, self.Role.ADMIN) or self.is_superuser

    @property
    def is_project_admin(self) -> bool:
        return self.role == self.Role.ADMIN or self.is_superuser
