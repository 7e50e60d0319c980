"""Sign-in, sign-out, password change, and each role landing on its own page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests import factories

LANDINGS = {
    "receptionist": "/desk/",
    "manager": "/desk/",
    "therapist": "/therapist/",
    "driver": "/driver/",
}


def test_the_login_page_renders_with_csrf(client, db):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content
    assert b"Sign in" in response.content


@pytest.mark.parametrize("role", sorted(LANDINGS))
def test_each_role_lands_on_its_own_page(client, db, role):
    factories.UserFactory(username=f"a-{role}", role=role)
    response = client.post(
        "/accounts/login/", {"username": f"a-{role}", "password": "pw"}, follow=True
    )
    assert response.redirect_chain[-1][0] == LANDINGS[role]
    assert response.status_code == 200


def test_a_superuser_lands_on_the_desk(client, db):
    user = factories.UserFactory(role="driver", is_superuser=True, is_staff=True)
    client.force_login(user)
    assert client.get("/").url == "/desk/"


def test_wrong_password_says_so_and_signs_nobody_in(client, db):
    factories.UserFactory(username="ana")
    response = client.post("/accounts/login/", {"username": "ana", "password": "nope"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_anonymous_pages_redirect_to_login(client, db):
    for path in ["/", "/desk/", "/therapist/", "/driver/", "/reports/"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.url.startswith(reverse("login")), path


def test_an_htmx_request_without_a_session_is_sent_to_login_whole(client, db):
    response = client.get("/desk/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == reverse("login")


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("therapist", "/desk/"),
        ("driver", "/desk/"),
        ("receptionist", "/reports/"),
        ("receptionist", "/therapist/"),
        ("driver", "/therapist/"),
        ("therapist", "/driver/"),
    ],
)
def test_a_role_is_kept_off_other_roles_pages(client, db, role, path):
    client.force_login(factories.UserFactory(role=role))
    response = client.get(path)
    assert response.status_code == 403
    assert b"not for your role" in response.content


def test_logout_is_a_post_and_ends_the_session(client, db):
    client.force_login(factories.UserFactory())
    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_password_change_checks_the_old_password(client, db):
    user = factories.UserFactory()
    client.force_login(user)
    bad = client.post(
        "/accounts/password/",
        {"old_password": "wrong", "new_password1": "x7!pQz-long", "new_password2": "x7!pQz-long"},
    )
    assert bad.status_code == 200
    assert b"old password was entered incorrectly" in bad.content
    good = client.post(
        "/accounts/password/",
        {"old_password": "pw", "new_password1": "x7!pQz-long", "new_password2": "x7!pQz-long"},
    )
    assert good.status_code == 302
    user.refresh_from_db()
    assert user.check_password("x7!pQz-long")


def test_forms_enforce_csrf(db):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    factories.UserFactory(username="ana")
    response = strict.post("/accounts/login/", {"username": "ana", "password": "pw"})
    assert response.status_code == 403
    assert b"form has expired" in response.content
