"""Usernames are unique as people read them (issue 19): `ADMIN`, Cyrillic `аdmin` or fullwidth
`ａdmin` cannot sit beside `admin`, whether they come through registration, the API or the
Django admin; each is a clear 400 (or the admin form's error), never a 500."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotate.models import User
from annotate.models.accounts import LOOK_ALIKE_MESSAGE
from annotate.services import accounts
from annotate.services.errors import InvalidInput
from annotate.usernames import username_key

LOOK_ALIKES = ["ADMIN", "Admin", "\u0430dmin", "adm\u0456n"]


def test_the_key_folds_case_compatibility_forms_and_confusables() -> None:
    assert {username_key(name) for name in ["admin", "\uff41dmin", *LOOK_ALIKES]} == {"admin"}
    assert username_key("bob_l") == username_key("bob_1") == username_key("BOB_|")
    assert username_key("alice") != username_key("alicia")
    assert username_key("straße") == username_key("STRASSE")


@pytest.mark.django_db
@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_registration_refuses_a_look_alike(name: str) -> None:
    accounts.user_register(username="admin", password="a-long-passphrase-1")
    with pytest.raises(InvalidInput) as refused:
        accounts.user_register(username=name, password="a-long-passphrase-1")
    assert refused.value.field == "username"
    answer = APIClient().post(
        "/api/auth/register/",
        {"username": name, "password": "a-long-passphrase-1"},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["detail"] == LOOK_ALIKE_MESSAGE
    page = Client().post("/accounts/signup/", {"username": name, "password": "a-long-passphrase-1"})
    assert page.status_code == 200 and LOOK_ALIKE_MESSAGE in page.content.decode()
    assert User.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["admin", "\uff41dmin"])  # fullwidth: `admin` once in NFKC
def test_the_same_name_again_is_still_taken(name: str) -> None:
    accounts.user_register(username="admin", password="a-long-passphrase-1")
    answer = APIClient().post(
        "/api/auth/register/",
        {"username": name, "password": "a-long-passphrase-1"},
        format="json",
    )
    assert answer.status_code == 409
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_the_admin_refuses_a_look_alike_on_add_and_on_rename() -> None:
    root = User.objects.create_superuser("root", "root@example.org", "secret-password-1")
    User.objects.create_user("admin", password="x-long-passphrase-1")
    client = Client()
    client.force_login(root)
    added = client.post(
        "/admin/annotate/user/add/",
        {"username": "\u0430dmin", "password1": "Xq9-long-pass!", "password2": "Xq9-long-pass!"},
    )
    assert added.status_code == 200 and LOOK_ALIKE_MESSAGE in added.content.decode()
    other = User.objects.create_user("bob", password="x-long-passphrase-1")
    renamed = client.post(
        f"/admin/annotate/user/{other.pk}/change/",
        {
            "username": "ADMIN",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "role": "volunteer",
            "is_active": "on",
        },
    )
    assert renamed.status_code == 200 and LOOK_ALIKE_MESSAGE in renamed.content.decode()
    other.refresh_from_db()
    assert other.username == "bob"
    assert User.objects.filter(username_key="admin").count() == 1


@pytest.mark.django_db
def test_every_save_keeps_the_key() -> None:
    user = User.objects.create_user("Carol", password="x-long-passphrase-1")
    assert user.username_key == username_key("carol")
    user.username = "Caro\u0406"  # Cyrillic capital I
    user.save(update_fields=["username"])
    user.refresh_from_db()
    assert user.username_key == username_key("Caro\u0406")


@pytest.mark.django_db
def test_demoting_an_admin_needs_confirmation_and_the_last_cannot_be_demoted() -> None:
    from annotate.services.errors import Conflict

    first = User.objects.create_user("first", password="x-long-passphrase-1", role="admin")
    second = User.objects.create_user("second", password="x-long-passphrase-1", role="admin")
    with pytest.raises(Conflict) as unconfirmed:
        accounts.user_set_role(user=second, role="volunteer")
    assert unconfirmed.value.field == "confirm"
    accounts.user_set_role(user=second, role="volunteer", confirmed=True)  # another is left
    with pytest.raises(Conflict):
        accounts.user_set_role(user=first, role="reviewer", confirmed=True)
    first.refresh_from_db()
    assert first.role == "admin"
    answer = APIClient()
    answer.force_authenticate(first)
    refused = answer.patch(
        f"/api/users/{first.pk}/", {"role": "volunteer", "confirm": True}, format="json"
    )
    assert refused.status_code == 409, refused.content
    third = User.objects.create_user("third", password="x-long-passphrase-1", role="admin")
    url = f"/api/users/{third.pk}/"
    assert answer.patch(url, {"role": "volunteer"}, format="json").status_code == 409
    confirmed = answer.patch(url, {"role": "volunteer", "confirm": True}, format="json")
    assert confirmed.status_code == 200 and confirmed.json()["role"] == "volunteer"


@pytest.mark.django_db
def test_the_django_admin_keeps_the_last_admin() -> None:
    root = User.objects.create_superuser("root", "root@example.org", "secret-password-1")
    only = User.objects.create_user("only", password="x-long-passphrase-1", role="admin")
    client = Client()
    client.force_login(root)
    form = {
        "username": "only",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "role": "volunteer",
        "is_active": "on",
    }
    refused = client.post(f"/admin/annotate/user/{only.pk}/change/", form)
    assert refused.status_code == 200 and "last active admin" in refused.content.decode()
    only.refresh_from_db()
    assert only.role == "admin"


@pytest.mark.django_db
def test_the_migration_keys_existing_users_and_leaves_later_look_alikes_keyless() -> None:
    import importlib

    from django.apps import apps

    migration = importlib.import_module("annotate.migrations.0018_username_key")
    first = User.objects.create_user("admin", password="x-long-passphrase-1")
    later = User.objects.create_user("other", password="x-long-passphrase-1")
    # As before the column: two look-alike names side by side, no keys.
    User.objects.filter(pk=later.pk).update(username="ADMIN")
    User.objects.update(username_key=None)
    migration.fill_keys(apps, None)
    first.refresh_from_db()
    later.refresh_from_db()
    assert (first.username_key, later.username_key) == ("admin", None)
