"""Limits on every way in, keyed on the address the deployment trusts (issue 19): a client
that writes a new X-Forwarded-For on each attempt is still one client, and guesses at one
account from many addresses share that account's budget."""

from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from annotate.models import User
from labeling_api.client_address import client_address

ADDRESS_LIMIT = 3
ACCOUNT_LIMIT = 5

# (path, is it the API): every way to sign in or sign up.
WAYS_IN = [
    ("/api/auth/token/", True),
    ("/api/auth/register/", True),
    ("/accounts/login/", False),
    ("/accounts/signup/", False),
    ("/admin/login/", False),
]
_addresses = count(1)


@pytest.fixture(autouse=True)
def small_rates() -> Iterator[None]:
    before = SimpleRateThrottle.THROTTLE_RATES  # read once, when DRF loaded
    SimpleRateThrottle.THROTTLE_RATES = {
        "auth": f"{ADDRESS_LIMIT}/min",
        "auth_account": f"{ACCOUNT_LIMIT}/min",
    }
    yield
    SimpleRateThrottle.THROTTLE_RATES = before


def _attempt(path: str, api: bool, username: str, **headers: Any) -> int:
    data = {"username": username, "password": "wrong-guess-1"}
    if api:
        return APIClient().post(path, data, format="json", **headers).status_code
    return Client().post(path, data, **headers).status_code


def _forged() -> str:
    return f"198.51.100.{next(_addresses) % 250}"


@pytest.mark.django_db
@pytest.mark.parametrize("path,api", WAYS_IN)
@pytest.mark.parametrize("proxies", [0, 1])
def test_a_new_x_forwarded_for_on_each_attempt_does_not_reset_the_address_budget(
    path: str, api: bool, proxies: int, settings
) -> None:
    """With no proxy the header is ignored; behind one, only the entry the proxy appended (the
    last) counts, and the client's own entries before it change nothing."""
    settings.TRUSTED_PROXY_COUNT = proxies
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": proxies}
    answers = []
    for attempt in range(ADDRESS_LIMIT + 2):
        forged = _forged()
        header = forged if proxies == 0 else f"{forged}, 203.0.113.7"
        answers.append(_attempt(path, api, f"someone{attempt}", HTTP_X_FORWARDED_FOR=header))
    assert 429 not in answers[:ADDRESS_LIMIT], answers
    assert answers[ADDRESS_LIMIT:] == [429, 429], answers
    assert (
        not User.objects.filter(username__startswith="someone")
        .exclude(username__in=[f"someone{i}" for i in range(ADDRESS_LIMIT)])
        .exists()
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path,api", [w for w in WAYS_IN if w[0] not in ("/api/auth/register/", "/accounts/signup/")]
)
def test_guesses_at_one_account_from_many_addresses_share_its_budget(
    path: str, api: bool, volunteer: User
) -> None:
    # Look-alikes of the name count against the same account.
    names = [volunteer.username, volunteer.username.upper(), volunteer.username.title()]
    answers = [
        _attempt(path, api, names[i % 3], REMOTE_ADDR=f"192.0.2.{i + 1}")
        for i in range(ACCOUNT_LIMIT + 1)
    ]
    assert 429 not in answers[:ACCOUNT_LIMIT], answers
    assert answers[ACCOUNT_LIMIT] == 429, answers
    # Another account from the same addresses is not held back.
    assert _attempt(path, api, "somebody-else", REMOTE_ADDR="192.0.2.1") != 429


def test_the_trusted_address_is_the_last_proxied_entry(settings) -> None:
    request = RequestFactory().get(
        "/", HTTP_X_FORWARDED_FOR="10.0.0.1, 203.0.113.9, 192.0.2.5", REMOTE_ADDR="127.0.0.1"
    )
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_address(request) == "127.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(request) == "192.0.2.5"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_address(request) == "203.0.113.9"
    settings.TRUSTED_PROXY_COUNT = 1
    bare = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1")
    assert client_address(bare) == "127.0.0.1"
