"""Editing one's profile in settings: names, bio, fields and switches; hostile text; CSRF."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kith.accounts import profile
from kith.accounts.models import Account
from kith.errors import ValidationFailed
from tests.world import person

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def profile_form(**overrides: str) -> dict[str, object]:
    form: dict[str, object] = {
        "display_name": "Wren Wilde",
        "pronouns": "she/her",
        "bio": "Birds, **books** and https://wren.example/blog",
        "field_0_name": "Website",
        "field_0_value": "https://wren.example",
        "field_1_name": "Town",
        "field_1_value": "Riverside",
        "discoverable": "on",
    }
    form.update(overrides)
    return form


async def account_named(rt, name: str) -> Account:  # type: ignore[no-untyped-def]
    async with rt.sessions() as s:
        account = await s.scalar(select(Account).where(Account.username_key == name))
        assert account is not None
        return account


async def test_profile__saved_and_shown_on_the_profile_page(settings, rt, db, app_client) -> None:  # type: ignore[no-untyped-def]
    # Given wren signed in
    await person(db, "wren")
    await app_client.sign_in("wren")
    await app_client.get("/settings/profile")
    # When they fill in their profile and lock the account
    r = await app_client.post("/settings/profile", profile_form(locked="on"))
    assert r.status_code == 303 and r.headers["location"] == "/settings/profile?notice=saved"
    # Then it is stored, the bio rendered and the URL field linked
    account = await account_named(rt, "wren")
    assert account.display_name == "Wren Wilde" and account.pronouns == "she/her"
    assert "<strong>books</strong>" in account.bio_html
    assert 'href="https://wren.example/blog"' in account.bio_html
    assert account.locked and account.discoverable and not account.hide_network
    assert account.fields[0]["name"] == "Website"
    assert account.fields[0]["value_html"].startswith('<a href="https://wren.example"')
    assert account.fields[1] == {"name": "Town", "value": "Riverside", "value_html": "Riverside"}
    # And the profile page shows it
    page = await app_client.get("/@wren")
    assert "Wren Wilde" in page.text and "she/her" in page.text
    assert '<a href="https://wren.example"' in page.text
    # And the settings form shows what was saved
    form = await app_client.get("/settings/profile?notice=saved")
    assert 'value="Wren Wilde"' in form.text and "Saved." in form.text


async def test_profile__script_and_html_are_neutralized_everywhere(
    settings, rt, db, app_client
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await app_client.sign_in("wren")
    await app_client.get("/settings/profile")
    r = await app_client.post(
        "/settings/profile",
        profile_form(
            display_name=XSS[:100],
            bio=XSS + " [click](javascript:alert(1))",
            pronouns="<b>x</b>",
            field_0_name=XSS[:100],
            field_0_value=XSS + ' "><svg onload=alert(1)>',
        ),
    )
    assert r.status_code == 303
    account = await account_named(rt, "wren")
    for html in (account.bio_html, account.fields[0]["value_html"]):
        assert "<script" not in html and "<img" not in html and "javascript:" not in html
        assert "<svg" not in html
    for page in (await app_client.get("/@wren"), await app_client.get("/settings/profile")):
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text and "<svg onload" not in page.text
        assert "&lt;script&gt;" in page.text  # shown as text, not run
    home = await app_client.get("/home")  # the display name in the page header stays text
    assert "<script>alert" not in home.text


async def test_profile__limits_give_field_errors_and_change_nothing(
    settings, rt, db, app_client
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await app_client.sign_in("wren")
    await app_client.get("/settings/profile")
    cases = [
        ({"display_name": "x" * 101}, "display_name"),
        ({"bio": "b" * 501}, "bio"),
        ({"pronouns": "p" * 41}, "pronouns"),
        ({"field_2_name": "n" * 101, "field_2_value": "v"}, "field_2"),
        ({"field_2_name": "n", "field_2_value": "v" * 256}, "field_2"),
        ({"field_3_name": "", "field_3_value": "no label"}, "field_3"),
    ]
    for overrides, field in cases:
        r = await app_client.post("/settings/profile", profile_form(**overrides))
        assert r.status_code == 422, field
        assert f'id="{field}-error"' in r.text
    account = await account_named(rt, "wren")
    assert account.display_name == "" and account.bio_source == "" and account.fields == []


async def test_profile__more_than_four_fields_is_refused(db) -> None:  # type: ignore[no-untyped-def]
    account = await person(db, "wren")
    data = profile.ProfileInput(fields=[(f"n{i}", f"v{i}") for i in range(5)])
    with pytest.raises(ValidationFailed) as err:
        await profile.update_profile(db, account, data)
    assert err.value.field == "fields"


async def test_profile__bidi_overrides_and_newlines_are_dropped_from_names(db) -> None:  # type: ignore[no-untyped-def]
    account = await person(db, "wren")
    data = profile.ProfileInput(display_name="\u202eevil\u202c\nname\x00", pronouns=" they ")
    await profile.update_profile(db, account, data)
    assert account.display_name == "evil name" and account.pronouns == "they"


async def test_profile__bio_links_local_mentions_and_hashtags(db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "finch")
    account = await person(db, "wren")
    await profile.update_profile(
        db, account, profile.ProfileInput(bio="Friends with @finch and @ghost. #birds")
    )
    assert 'href="http://kith.test/@finch"' in account.bio_html
    assert "@ghost" in account.bio_html and "/@ghost" not in account.bio_html
    assert 'href="http://kith.test/tags/birds"' in account.bio_html


async def test_profile__forged_csrf_is_refused_and_changes_nothing(
    settings, rt, db, app_client
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await app_client.sign_in("wren")
    await app_client.get("/settings/profile")
    app_client.csrf = "0" * 64
    forms = {
        "/settings/profile": profile_form(display_name="Hacked"),
        "/settings/account/password": {
            "current_password": "x",
            "password": "hacked hacked hacked",
            "password_confirmation": "hacked hacked hacked",
        },
        "/settings/account/email": {"email": "evil@example.test", "email_password": "x"},
        "/settings/two_factor/disable": {"password": "x"},
        "/settings/invites": {},
    }
    for url, form in forms.items():
        r = await app_client.post(url, form)
        assert r.status_code == 403, url
        assert "expired" in r.text
    # A multipart upload without the right token is refused as well
    r = await app_client.client.post(
        "/settings/profile/avatar",
        data={"csrf_token": "0" * 64},
        files={"avatar": ("a.png", b"\x89PNG", "image/png")},
    )
    assert r.status_code == 403
    assert (await account_named(rt, "wren")).display_name == ""


async def test_settings__anonymous_visitors_are_sent_to_sign_in(app_client) -> None:  # type: ignore[no-untyped-def]
    for url in ("/settings", "/settings/profile", "/settings/account", "/settings/invites"):
        r = await app_client.get(url)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/auth/sign_in")
