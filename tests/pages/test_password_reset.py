"""Password reset by email for staff (Django's views, templates/registration/): the link
arrives (locmem backend), sets a new password once, and the old password stops working."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client as DjangoClient

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def locmem_email(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def ana():
    user = factories.UserFactory(role="receptionist", username="ana", email="ana@spa.example")
    user.set_password("the-old-passphrase")
    user.save()
    return user


def test_the_sign_in_page_offers_the_reset():
    assert (
        'href="/accounts/password/reset/"'
        in DjangoClient().get("/accounts/login/").content.decode()
    )


def test_a_reset_link_by_email_sets_a_new_password_once(ana):
    browser = DjangoClient()
    sent = browser.post("/accounts/password/reset/", {"email": "ana@spa.example"})
    assert sent.status_code == 302 and sent["Location"] == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ana@spa.example"]
    assert mail.outbox[0].subject == "Reset your password"
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mail.outbox[0].body)
    assert link, mail.outbox[0].body

    form = browser.get(link.group(1), follow=True)  # Django swaps the token for a session
    assert form.status_code == 200 and "Choose a new password" in form.content.decode()
    new = "a-brand-new-passphrase-42"
    done = browser.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302 and done["Location"] == "/accounts/password/reset/done/"

    ana.refresh_from_db()
    assert ana.check_password(new) and not ana.check_password("the-old-passphrase")
    again = DjangoClient().get(link.group(1), follow=True)
    assert "This link no longer works" in again.content.decode()


def test_an_unknown_address_gets_the_same_answer_and_no_email(ana):
    answer = DjangoClient().post("/accounts/password/reset/", {"email": "who@else.example"})
    assert answer.status_code == 302 and answer["Location"] == "/accounts/password/reset/sent/"
    assert mail.outbox == []
