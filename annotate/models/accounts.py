"""The user table: roles and the counters the ranking reads."""

from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class User(AbstractUser):
    class Role(models.TextChoices):
        VOLUNTEER = "volunteer"
        REVIEWER = "reviewer"
        ADMIN = "admin"

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

    @property
    def is_reviewer(self) -> bool:
        return self.role in (self.Role.REVIEWER, self.Role.ADMIN) or self.is_superuser

    @property
    def is_project_admin(self) -> bool:
        return self.role == self.Role.ADMIN or self.is_superuser
