from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from annotate import selectors
from annotate.models import User


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication (same header, same errors) with the token and its user read
    by one prepared statement (through the ORM this lookup alone took about 1.5 ms per request
    on the development machine, more than the lease it guards), and then kept by the process
    for READ_CACHE_SECONDS with CACHE_TOKEN_OWNERS (annotate.recent)."""

    def authenticate_credentials(self, key: str) -> tuple[User, str]:
        user = selectors.user_for_token(key=key)
        if user is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if settings.TOKEN_TTL_HOURS > 0:
            created = selectors.token_created(key=key)
            if created is None or timezone.now() - created > timedelta(
                hours=settings.TOKEN_TTL_HOURS
            ):
                raise exceptions.AuthenticationFailed(_("Token expired; sign in again."))
        # request.auth is the key itself: nothing here reads the Token instance, and making
        # one (Model.__init__ setting its user) cost more than the cached lookup above.
        return user, key


class AuthenticatedRequest(Request):
    """The request of a view whose permission classes admit only signed-in users: its `user`
    is a User, never AnonymousUser. An annotation only; DRF makes plain Requests."""

    user: User
