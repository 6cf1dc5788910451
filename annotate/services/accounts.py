"""Users and roles."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotate.models import Assignment, CandidateVote, Grid, User, Vote
from annotate.models.accounts import LOOK_ALIKE_MESSAGE
from annotate.services.errors import Conflict, InvalidInput
from annotate.services.projects import validation_message


def user_register(*, username: str, password: str, email: str = "") -> tuple[User, str]:
    """Create a volunteer and its API token."""
    user = User(username=username.strip(), email=email.strip(), role=User.Role.VOLUNTEER)
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as error:
        if "username" in getattr(error, "message_dict", {}):
            if User.objects.filter(username=user.username).exists():
                raise Conflict("That username is taken.", field="username") from None
            if LOOK_ALIKE_MESSAGE in error.message_dict["username"]:
                # `ADMIN` or Cyrillic `аdmin` beside `admin` (annotate.usernames).
                raise InvalidInput(LOOK_ALIKE_MESSAGE, field="username") from None
        raise InvalidInput(validation_message(error)) from None
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise InvalidInput(" ".join(error.messages), field="password") from None
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
            token = Token.objects.create(user=user)
    except IntegrityError:
        raise Conflict("That username is taken.", field="username") from None
    return user, token.key


def user_set_role(*, user: User, role: str, confirmed: bool = False) -> User:
    """Make `user` a volunteer, reviewer or admin. Admins may use the Django admin too.
    Demoting an admin takes `confirmed` (one admin must not take the others' rights by
    accident), and the last active admin cannot be demoted at all."""
    if role not in User.Role.values:
        raise InvalidInput(f"Unknown role {role!r}; use one of {', '.join(User.Role.values)}.")
    with transaction.atomic():
        if user.role == User.Role.ADMIN and role != User.Role.ADMIN:
            # The admins' rows locked, so that two admins demoting each other at once cannot
            # both pass: the last active admin stays one.
            admins = list(
                User.objects.select_for_update()
                .filter(role=User.Role.ADMIN, is_active=True)
                .values_list("pk", flat=True)
            )
            if not set(admins) - {user.pk}:
                raise Conflict("This is the last admin; make another admin first.", field="role")
            if not confirmed:
                raise Conflict(
                    f"{user.username} is an admin: send confirm=true to demote them.",
                    field="confirm",
                )
        user.role = role
        user.is_staff = role == User.Role.ADMIN or user.is_superuser
        user.save(update_fields=["role", "is_staff"])
    return user


def user_is_last_admin(*, user: User) -> bool:
    """Whether `user` is the only active admin (then they keep the role)."""
    return (
        user.role == User.Role.ADMIN
        and not User.objects.filter(role=User.Role.ADMIN, is_active=True)
        .exclude(pk=user.pk)
        .exists()
    )


def user_token(*, user: User) -> str:
    """The user's API token; a new one when theirs is older than TOKEN_TTL_HOURS (when set)."""
    token, _ = Token.objects.get_or_create(user=user)
    ttl = settings.TOKEN_TTL_HOURS
    if ttl > 0 and timezone.now() - token.created > timedelta(hours=ttl):
        token.delete()  # through the ORM: annotate.recent forgets it here
        token = Token.objects.create(user=user)
    key: str = token.key
    return key


def token_revoke(*, user: User) -> int:
    """Delete `user`'s API token (sign out): it stops working at once in this process, because
    deleting through the ORM makes annotate.recent forget it (post_delete), and in the others
    within READ_CACHE_SECONDS. Signing in again makes a new one. Returns how many were deleted."""
    deleted = 0
    for token in Token.objects.filter(user=user):
        token.delete()  # one by one: each deletion sends the signal that forgets it
        deleted += 1
    return deleted


def user_set_leaderboard_visibility(*, user: User, visible: bool) -> User:
    user.show_on_leaderboard = visible
    user.save(update_fields=["show_on_leaderboard"])
    return user


DAILY_GOAL_MAX = 10000


def user_set_daily_goal(*, user: User, goal: int | None) -> User:
    """The votes a day the volunteer aims for (None: no goal)."""
    if goal is not None and not 1 <= goal <= DAILY_GOAL_MAX:
        raise InvalidInput(
            f"A daily goal is between 1 and {DAILY_GOAL_MAX} votes.", field="daily_goal"
        )
    user.daily_goal = goal
    user.save(update_fields=["daily_goal"])
    return user


def user_has_labeling_history(*, user: User) -> bool:
    """Whether deleting `user` would take votes, answers or leases with them (their rows
    cascade), leaving image and candidate counters and decisions resting on missing votes."""
    return (
        Vote.objects.filter(user=user).exists()
        or Assignment.objects.filter(user=user).exists()
        or CandidateVote.objects.filter(user=user).exists()
        or Grid.objects.filter(volunteer=user).exists()
    )


def user_deactivate(*, user: User) -> User:
    """Close the account and keep everything it did: it can no longer sign in or use its token
    (labeling_api.authentication refuses inactive users), and its votes still count."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    return user


def user_remove(*, user: User) -> bool:
    """Delete `user` when nothing of theirs would go with them; otherwise deactivate them.
    Returns True when deleted, False when deactivated."""
    with transaction.atomic():
        if user_has_labeling_history(user=user):
            user_deactivate(user=user)
            return False
        user.delete()
        return True
