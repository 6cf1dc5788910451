"""Limits on every way in: the API's token and registration, the sign-in and sign-up pages and
the Django admin's sign-in. Two budgets, both in the shared cache (the database), so they hold
across web processes:

- per client address ("auth", AUTH_THROTTLE_RATE), the address being the one
  labeling_api.client_address trusts: a client that writes its own X-Forwarded-For changes
  nothing;
- per account ("auth_account", AUTH_ACCOUNT_THROTTLE_RATE), keyed on the look-alike key of the
  username tried (annotate.usernames), so that guesses at one password spread over many
  addresses, or over `Admin`, `ADMIN` and `аdmin`, share one budget.
"""

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext
from rest_framework.throttling import SimpleRateThrottle

from annotate.usernames import username_key
from labeling_api.client_address import client_address


class _Throttle(SimpleRateThrottle):
    def get_rate(self) -> str | None:
        # A scope without a rate is not limited (tests set some rates only).
        return self.THROTTLE_RATES.get(self.scope) if self.scope else None


class AddressThrottle(_Throttle):
    scope = "auth"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


class AccountThrottle(_Throttle):
    scope = "auth_account"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        data = getattr(request, "data", None)
        if data is None:  # a Django request (the pages): its form fields
            data = request.POST
        username = data.get("username") if hasattr(data, "get") else None
        if not isinstance(username, str) or not username.strip():
            return None  # nothing to count against; the address budget still applies
        # Hashed: a cache key holds only safe characters, whatever the name tried.
        ident = hashlib.sha256(username_key(username).encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


def throttle_posts(*, per_account: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A page view's POSTs within the address budget and, with `per_account`, the account's;
    past either, a 429 before the view runs."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method == "POST":
                throttles: list[_Throttle] = [AddressThrottle()]
                if per_account:
                    throttles.append(AccountThrottle())
                # Each budget is asked (and charged when it allows), not only the first. DRF's
                # throttles read only META and POST, which a Django request has too.
                page_request: Any = request
                allowed = [throttle.allow_request(page_request, None) for throttle in throttles]  # type: ignore[arg-type]
                if not all(allowed):
                    return HttpResponse(
                        gettext("Too many attempts; wait a minute and try again."),
                        status=429,
                        content_type="text/plain",
                    )
            return view(request, *args, **kwargs)

        return wrapped

    return decorate
