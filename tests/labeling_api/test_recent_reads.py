"""The token owners and projects each process keeps for READ_CACHE_SECONDS (annotate.recent):
fewer statements per request, changes made here applied at once, changes made elsewhere within
the bound."""

from datetime import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate import recent
from annotate.models import Project, User
from annotate.rows.names import sql
from tests.factories import ImageFactory


@pytest.fixture(autouse=True)
def token_owners_kept(settings):
    """This module is about the memory: token owners kept too (CACHE_TOKEN_OWNERS), except
    where a test says otherwise."""
    settings.CACHE_TOKEN_OWNERS = True


@pytest.fixture
def token(volunteer):
    return Token.objects.create(user=volunteer)


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def later(monkeypatch):
    """Moves this process's clock for annotate.recent forward by the given seconds."""
    offset = [0.0]
    real_clock = recent.clock
    monkeypatch.setattr(recent, "clock", lambda: real_clock() + offset[0])

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


def statements_of(call) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code < 300, response.content
    return [query["sql"] for query in captured.captured_queries]


@pytest.mark.parametrize("seconds", [5, 0])
def test_a_second_lease_reads_neither_the_token_nor_the_project(
    volunteer, token, project, labels, settings, seconds
):
    """Kept for READ_CACHE_SECONDS; with 0, read on every request."""
    settings.READ_CACHE_SECONDS = seconds
    for _ in range(2):
        ImageFactory(project=project)
    client = token_client(token.key)
    lease = lambda: client.post(f"/api/projects/{project.pk}/assignments/")  # noqa: E731

    first = statements_of(lease)
    second = statements_of(lease)

    token_read = f'"{Token._meta.db_table}" t'
    project_read = f'FROM "{Project._meta.db_table}" p WHERE'
    assert any(token_read in sql for sql in first)
    assert any(project_read in sql for sql in first)
    kept = seconds > 0
    assert any(token_read in sql for sql in second) is not kept
    assert any(project_read in sql for sql in second) is not kept
    assert len(second) == len(first) - (2 if kept else 0)


def test_what_this_process_changes_applies_at_once(
    client_for, admin_user, volunteer, token, settings
):
    settings.READ_CACHE_SECONDS = 3600
    client = token_client(token.key)
    assert client.get("/api/me/").json()["role"] == "volunteer"

    # A role changed through the API (another request, same process): the next call sees it.
    changed = client_for(admin_user).patch(
        f"/api/users/{volunteer.pk}/", {"role": "reviewer"}, format="json"
    )
    assert changed.status_code == 200
    assert client.get("/api/me/").json()["role"] == "reviewer"

    volunteer.refresh_from_db()
    volunteer.is_active = False
    volunteer.save()
    assert client.get("/api/me/").status_code == 401

    volunteer.is_active = True
    volunteer.save()
    assert client.get("/api/me/").status_code == 200
    token.delete()
    assert client.get("/api/me/").status_code == 401


def test_a_change_made_elsewhere_applies_within_the_cache_time(volunteer, token, settings, later):
    settings.READ_CACHE_SECONDS = 5
    client = token_client(token.key)
    assert client.get("/api/me/").status_code == 200
    # Another process revokes the token: no signal reaches this one.
    with connection.cursor() as cursor:
        cursor.execute(sql("DELETE FROM {Token} WHERE {Token.key} = %s"), [token.key])

    later(4.9)
    assert client.get("/api/me/").status_code == 200  # the bounded delay, as documented
    later(0.2)
    assert client.get("/api/me/").status_code == 401
    assert client.get("/api/me/").status_code == 401


def test_a_deactivation_elsewhere_applies_within_the_cache_time(volunteer, token, settings, later):
    settings.READ_CACHE_SECONDS = 5
    client = token_client(token.key)
    assert client.get("/api/me/").status_code == 200
    User.objects.filter(pk=volunteer.pk).update(is_active=False)  # no signal, as from elsewhere
    later(5.1)
    response = client.get("/api/me/")
    assert response.status_code == 401 and "inactive" in response.json()["detail"]


def test_a_refused_token_is_not_remembered(volunteer, settings):
    settings.READ_CACHE_SECONDS = 3600
    client = token_client("f" * 40)
    assert client.get("/api/me/").status_code == 401
    Token.objects.create(user=volunteer, key="f" * 40)
    assert client.get("/api/me/").status_code == 200


def test_a_project_change_applies_to_the_next_lease(
    client_for, admin_user, volunteer, token, project, labels, settings, later
):
    settings.READ_CACHE_SECONDS = 5
    for _ in range(4):
        ImageFactory(project=project)
    client = token_client(token.key)

    def lease_seconds() -> float:
        answer = client.post(f"/api/projects/{project.pk}/assignments/")
        assert answer.status_code == 201
        expires = datetime.fromisoformat(answer.json()["expires_at"].replace("Z", "+00:00"))
        return (expires - datetime.now(expires.tzinfo)).total_seconds()

    assert lease_seconds() == pytest.approx(project.lease_seconds, abs=5)
    # Through the API, in this process: at once.
    patched = client_for(admin_user).patch(
        f"/api/projects/{project.pk}/", {"lease_seconds": 3000}, format="json"
    )
    assert patched.status_code == 200
    assert lease_seconds() == pytest.approx(3000, abs=5)
    # By another process: after the cache time.
    with connection.cursor() as cursor:
        cursor.execute(
            sql("UPDATE {Project} SET {Project.lease_seconds} = 6000 WHERE {Project.id} = %s"),
            [project.pk],
        )
    later(5.1)
    assert lease_seconds() == pytest.approx(6000, abs=5)


def test_the_memory_is_bounded(settings):
    """A flood of distinct tokens cannot grow a process: the least recently used go first."""
    settings.READ_CACHE_SECONDS = 3600
    recent.put(("token", "first"), 1)
    for key in range(recent.MAX_ENTRIES):
        recent.put(("token", key), key)
    assert recent.get(("token", "first")) is None
    assert recent.get(("token", 1)) == 1
    assert recent.get(("token", recent.MAX_ENTRIES - 1)) == recent.MAX_ENTRIES - 1
    assert len(recent._kept) == recent.MAX_ENTRIES


def test_logout_deletes_the_token_and_this_process_forgets_it_at_once(volunteer, token, settings):
    settings.READ_CACHE_SECONDS = 3600
    client = token_client(token.key)
    assert client.get("/api/me/").status_code == 200  # the token is now kept in this process

    response = client.post("/api/auth/logout/")

    assert response.status_code == 204
    assert not Token.objects.filter(key=token.key).exists()
    assert client.get("/api/me/").status_code == 401
    assert client.post("/api/auth/logout/").status_code == 401
    # Another token of the same user is a new sign-in, unaffected.
    fresh = Token.objects.create(user=volunteer)
    assert token_client(fresh.key).get("/api/me/").status_code == 200


@pytest.mark.parametrize("role", ["reviewer", "admin"])
def test_a_promotion_elsewhere_is_never_refused(volunteer, token, project, settings, role):
    """Another process promotes the volunteer (no signal reaches this one, whose memory still
    says volunteer): the first request that needs the new role is admitted, because a refusal
    reads the user again first (issue 19)."""
    settings.READ_CACHE_SECONDS = 3600
    client = token_client(token.key)
    assert client.get("/api/me/").json()["role"] == "volunteer"  # remembered now
    assert client.get(f"/api/projects/{project.pk}/review/").status_code == 403
    User.objects.filter(pk=volunteer.pk).update(role=role)  # .update(): no signal
    assert client.get(f"/api/projects/{project.pk}/review/").status_code == 200
    assert client.get("/api/me/").json()["role"] == role  # the fresh row is remembered


def test_a_demotion_elsewhere_is_refused_within_the_cache_time(
    volunteer, token, project, settings, later
):
    settings.READ_CACHE_SECONDS = 5
    User.objects.filter(pk=volunteer.pk).update(role="reviewer")
    client = token_client(token.key)
    assert client.get(f"/api/projects/{project.pk}/review/").status_code == 200
    User.objects.filter(pk=volunteer.pk).update(role="volunteer")  # as from another process
    later(5.1)
    assert client.get(f"/api/projects/{project.pk}/review/").status_code == 403


def test_tokens_expire_after_token_ttl_hours_when_set(volunteer, token, settings):
    from datetime import timedelta

    from django.utils import timezone

    Token.objects.filter(key=token.key).update(created=timezone.now() - timedelta(hours=2))
    settings.TOKEN_TTL_HOURS = 0  # the default: tokens last until signed out
    assert token_client(token.key).get("/api/me/").status_code == 200
    recent.forget_all()
    settings.TOKEN_TTL_HOURS = 1
    expired = token_client(token.key).get("/api/me/")
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    volunteer.set_password("a-long-passphrase-9")
    volunteer.save()
    signed_in = APIClient().post(
        "/api/auth/token/",
        {"username": volunteer.username, "password": "a-long-passphrase-9"},
        format="json",
    )
    new_key = signed_in.json()["token"]
    assert new_key != token.key
    assert token_client(new_key).get("/api/me/").status_code == 200


def test_by_default_changes_elsewhere_apply_to_the_next_request(
    volunteer, token, project, settings
):
    """Token owners are not kept by default: a demotion, a deactivation or a deleted token made
    by another process (no signal reaches this one) applies to the very next request, even with
    projects kept for an hour."""
    settings.CACHE_TOKEN_OWNERS = False
    settings.READ_CACHE_SECONDS = 3600
    User.objects.filter(pk=volunteer.pk).update(role="reviewer")
    client = token_client(token.key)
    review = f"/api/projects/{project.pk}/review/"
    assert client.get(review).status_code == 200
    User.objects.filter(pk=volunteer.pk).update(role="volunteer")
    assert client.get(review).status_code == 403
    User.objects.filter(pk=volunteer.pk).update(is_active=False)
    assert client.get("/api/me/").status_code == 401
    User.objects.filter(pk=volunteer.pk).update(is_active=True)
    assert client.get("/api/me/").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(sql("DELETE FROM {Token} WHERE {Token.key} = %s"), [token.key])
    assert client.get("/api/me/").status_code == 401
