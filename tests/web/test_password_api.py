"""The password page's HTTP surface, over real HTTP against a real aiohttp server, store and secret box."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bot.domain.passwords import password_problems
from bot.web.password_page import COOKIE, CSP, GONE, NO_SESSION, OPENED, SECURITY_HEADERS, PasswordPages, token_hash

from .conftest import CANARY, OTHER, OWNER, PageServer, ServeFactory

API_HEADERS = {"X-Requested-With": "ecsbot"}


@pytest.fixture
async def srv(serve_pages: ServeFactory) -> AsyncIterator[PageServer]:
    async with serve_pages() as server:
        yield server


@pytest.fixture
async def http(srv: PageServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=srv.url, headers=API_HEADERS, timeout=5.0) as client:
        yield client


def body(link: str, **extra: Any) -> dict[str, Any]:
    u, t = PageServer.parts(link)
    return {"u": u, "t": t, **extra}


async def opened(http: httpx.AsyncClient, link: str) -> httpx.Response:
    """Open the page as the browser does: the link's token for a page session (the client keeps the cookie)."""
    response = await http.post("/password/api/open", json=body(link))
    assert response.status_code == 200, response.text
    return response


async def set_password(http: httpx.AsyncClient, password: str = CANARY, confirm: str | None = None) -> httpx.Response:
    return await http.post("/password/api/set", json={"password": password, "confirm": confirm or password})


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    assert "access-control-allow-origin" not in response.headers


# --------------------------------------------------------------------------------------------------------- links


async def test_link_carries_a_256_bit_token_in_the_fragment_and_the_store_keeps_only_its_hash(srv: PageServer) -> None:
    link = await srv.link()
    assert link.startswith(srv.url + "/password#u=" + OWNER + "&t=")
    u, t = PageServer.parts(link)
    assert u == OWNER and len(t) >= 43  # token_urlsafe(32): 256 bits
    rows = await srv.store.query("SELECT * FROM tokens")
    assert len(rows) == 1
    assert rows[0]["token_hash"] == token_hash(t) and t not in str(rows[0])
    assert rows[0]["subject"] == "draft-1|Linux" and rows[0]["user_id"] == OWNER and rows[0]["purpose"] == "password"
    kept = await srv.store.query("SELECT * FROM secrets WHERE key = 'link:draft-1'")
    assert len(kept) == 1 and t.encode() not in bytes(kept[0]["ciphertext"])  # the link itself only encrypted


async def test_a_refreshed_form_reuses_the_unused_link_and_never_mints_another(srv: PageServer) -> None:
    link = await srv.link()
    assert await srv.link() == link and await srv.link() == link
    assert await srv.store.query("SELECT count(*) AS n FROM tokens") == [{"n": 1}]
    windows = await srv.link(os_type="Windows")  # another image: the old link dies, one live link per draft
    assert windows != link
    rows = await srv.store.query("SELECT subject FROM tokens")
    assert [r["subject"] for r in rows] == ["draft-1|Windows"]


async def test_an_opened_link_is_replaced_by_a_fresh_one(srv: PageServer, http: httpx.AsyncClient) -> None:
    link = await srv.link()
    await opened(http, link)
    fresh = await srv.link()
    assert fresh != link
    again = await http.post("/password/api/open", json=body(link))
    assert again.status_code == 410 and again.json()["error"] == OPENED


async def test_link_for_another_users_draft_is_refused(srv: PageServer) -> None:
    await srv.link(draft_id="d-own", user_id=OWNER)
    with pytest.raises(PermissionError, match="another Slack user"):
        await srv.link(draft_id="d-own", user_id=OTHER)


async def test_public_url_is_reassignable_and_a_trailing_slash_is_tolerated(srv: PageServer) -> None:
    srv.pages.public_url = "https://bot.example.com/"
    assert (await srv.link(draft_id="d-x")).startswith("https://bot.example.com/password#u=")
    assert srv.pages.origin == "https://bot.example.com"
    assert "placeholder" not in repr(srv.pages) and "example.com" in repr(srv.pages)


# ------------------------------------------------------------------------------------------------------- headers


async def test_every_route_carries_the_security_headers(srv: PageServer, http: httpx.AsyncClient) -> None:
    link = await srv.link()
    responses = [
        await http.get("/password"),
        await http.get("/password/static/password.js"),
        await http.get("/password/static/password.css"),
        await http.get("/password/static/nope.js"),
        await http.get("/password/api/info"),  # 405
        await http.post("/password/api/info", json={}),  # 410: no session yet
        await http.post("/password/api/open", json={"u": OWNER, "t": "x" * 43}),  # 410
        await http.post("/password/api/open", json=body(link)),
        await http.post("/password/api/info", json={}),
        await set_password(http, "a", "b"),  # 422
        await http.post("/password/api/info", json={}, headers={"X-Requested-With": ""}),  # 403
        await http.post("/password/api/generate", json={}),
        await set_password(http),  # 410 now: the session is used up
        await http.get("/password/signin"),  # 303: sign-in is off here
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 405, 410, 410, 200, 200, 422, 403, 200, 410, 303]
    for response in responses:
        assert_security_headers(response)
    assert CSP == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )


async def test_the_session_cookie_is_httponly_strict_and_scoped(srv: PageServer, http: httpx.AsyncClient) -> None:
    response = await opened(http, await srv.link())
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/password" in lowered
    assert "max-age=600" in lowered and "secure" not in lowered  # plain http on loopback here
    _, token = PageServer.parts(await srv.link())
    assert token not in cookie
    srv.pages.public_url = srv.url.replace("http://", "https://")
    assert srv.pages.secure


async def test_page_and_assets_have_no_inline_or_third_party_code(http: httpx.AsyncClient) -> None:
    page = await http.get("/password")
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<title>Set the admin password</title>" in html
    assert html.count('type="password"') == 2 and html.count('autocomplete="new-password"') == 2
    assert "style=" not in html and "<style" not in html and "<script>" not in html and "on" + "click" not in html
    assert "http://" not in html and "https://" not in html and "//" + "cdn" not in html
    assert "<noscript>" in html and 'aria-live="assertive"' in html
    js = await http.get("/password/static/password.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert "history.replaceState" in js.text and "X-Requested-With" in js.text
    css = await http.get("/password/static/password.css")
    assert css.headers["content-type"].startswith("text/css") and "@import" not in css.text and "url(" not in css.text


async def test_unknown_static_names_and_traversal_are_not_served(http: httpx.AsyncClient) -> None:
    for path in ("/password/static/password.html", "/password/static/..%2Fpassword_page.py", "/password/static/x"):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert "import" not in response.text


# ---------------------------------------------------------------------------------------------------------- open


async def test_opening_uses_the_token_up_and_gives_a_session(srv: PageServer, http: httpx.AsyncClient) -> None:
    link = await srv.link(os_type="Linux")
    first = await http.post("/password/api/open", json=body(link))
    assert first.status_code == 200 and first.json() == {"ok": True, "signin": False}
    assert srv.open_calls == ["draft-1"]
    second = await http.post("/password/api/open", json=body(link))
    assert second.status_code == 410 and second.json()["error"] == OPENED
    rows = await srv.store.query("SELECT used_at FROM tokens")
    assert rows and rows[0]["used_at"] is not None
    sessions = await srv.store.query("SELECT * FROM page_sessions")
    assert len(sessions) == 1 and sessions[0]["draft_id"] == "draft-1" and sessions[0]["user_id"] == OWNER
    assert http.cookies.get(COOKIE) not in str(sessions[0])  # only its hash is stored


async def test_info_gives_the_rules_and_the_session_time(srv: PageServer, http: httpx.AsyncClient) -> None:
    await opened(http, await srv.link(os_type="Linux"))
    first = await http.post("/password/api/info", json={})
    second = await http.post("/password/api/info", json={})
    assert first.status_code == second.status_code == 200
    data = first.json()
    assert data["os_type"] == "Linux" and data["username"] is None
    assert 590 <= data["expires_in"] <= 600
    assert data["bearer"] is True and data["signed_in"] is False and data["current"] is None
    assert [r["id"] for r in data["rules"]] == ["length", "classes", "allowed"]
    assert data["specials"] == "!@$%^-_=+[{}]:,./?~#*"


async def test_info_for_windows_adds_the_username_rule(srv: PageServer, http: httpx.AsyncClient) -> None:
    await opened(http, await srv.link(os_type="Windows"))
    data = (await http.post("/password/api/info", json={})).json()
    assert data["os_type"] == "Windows" and data["username"] == "Administrator"
    assert [r["id"] for r in data["rules"]][-1] == "username"


async def test_without_a_session_the_api_explains_itself(http: httpx.AsyncClient) -> None:
    for path in ("info", "set", "generate"):
        response = await http.post(f"/password/api/{path}", json={"password": CANARY, "confirm": CANARY})
        assert response.status_code == 410 and response.json()["error"] == NO_SESSION
    http.cookies.set(COOKIE, "A" * 43)
    forged = await http.post("/password/api/info", json={})
    assert forged.status_code == 410


# ----------------------------------------------------------------------------------------------------------- set


async def test_set_keeps_the_password_encrypted_on_the_draft_and_tells_slack(
    srv: PageServer, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    link = await srv.link(draft_id="draft-7")
    await opened(http, link)
    response = await set_password(http)
    assert response.status_code == 200 and response.json()["ok"] is True
    assert response.json()["expires_in"] == 15 * 60 and response.json()["verified"] is False
    assert CANARY not in response.text
    assert await srv.stored_password("draft-7") == CANARY
    info = await srv.workflow.draft_password_info("draft-7")
    assert info is not None and info.set_by == OWNER and info.set_via == "link"
    assert srv.set_calls == ["draft-7"]
    assert "password set for draft draft-7" in caplog.text
    _, token = PageServer.parts(link)
    assert CANARY not in caplog.text and token not in caplog.text


async def test_a_session_sets_once(srv: PageServer, http: httpx.AsyncClient) -> None:
    await opened(http, await srv.link())
    assert (await set_password(http)).status_code == 200
    again = await set_password(http, "Other-Pw#12345")
    assert again.status_code == 410
    assert (await http.post("/password/api/info", json={})).status_code == 410
    assert (await http.post("/password/api/generate", json={})).status_code == 410
    assert await srv.stored_password() == CANARY
    assert srv.set_calls == ["draft-1"]


@pytest.mark.parametrize(
    ("password", "confirm", "fragment"),
    [
        ("short1A!", "short1A?", "do not match"),
        ("alllowercase", "alllowercase", "at least three"),
        ("Abc 1234!", "Abc 1234!", "spaces are not allowed"),
        ("Ab1!", "Ab1!", "8 to 26"),
    ],
)
async def test_weak_or_mismatched_is_422_and_the_session_stays_usable(
    srv: PageServer, http: httpx.AsyncClient, password: str, confirm: str, fragment: str
) -> None:
    await opened(http, await srv.link())
    response = await set_password(http, password, confirm)
    assert response.status_code == 422
    data = response.json()
    assert any(fragment in p for p in data["problems"]), data
    assert password not in response.text
    assert await srv.stored_password() is None and srv.set_calls == []
    assert (await set_password(http)).status_code == 200


async def test_windows_rules_are_checked_on_the_server(srv: PageServer, http: httpx.AsyncClient) -> None:
    await opened(http, await srv.link(os_type="Windows"))
    for bad in ("Xrotartsinimda9!", "My-Administrator1", "Q9!zzADMzzzz"):
        assert password_problems(bad, os_type="Linux") == []  # fine for Linux: only the Windows rule catches it
        response = await set_password(http, bad)
        assert response.status_code == 422, bad
        assert any("Administrator" in p for p in response.json()["problems"])
    assert (await set_password(http)).status_code == 200


async def test_expired_link_and_expired_session_are_410(srv: PageServer, http: httpx.AsyncClient) -> None:
    link = await srv.link()
    srv.clock.advance(600)
    expired = await http.post("/password/api/open", json=body(link))
    assert expired.status_code == 410 and expired.json()["error"] == GONE
    await opened(http, await srv.link())
    srv.clock.advance(599)
    assert (await http.post("/password/api/info", json={})).json()["expires_in"] == 1
    srv.clock.advance(1)
    for path, extra in (("info", {}), ("set", {"password": CANARY, "confirm": CANARY}), ("generate", {})):
        response = await http.post(f"/password/api/{path}", json=extra)
        assert response.status_code == 410 and "time is up" in response.json()["error"], path
    assert await srv.stored_password() is None


async def test_another_users_u_is_refused_exactly_like_an_unknown_token(
    srv: PageServer, http: httpx.AsyncClient
) -> None:
    link = await srv.link(user_id=OWNER)
    _, token = PageServer.parts(link)
    wrong_user = await http.post("/password/api/open", json={"u": OTHER, "t": token})
    unknown = await http.post("/password/api/open", json={"u": OWNER, "t": "A" * 43})
    malformed = await http.post("/password/api/open", json={"u": "<x>", "t": "B" * 43})
    assert wrong_user.status_code == unknown.status_code == malformed.status_code == 410
    assert wrong_user.json() == unknown.json() == malformed.json() == {"error": GONE}
    assert COOKIE not in http.cookies
    await opened(http, link)  # not used up by the attempts


async def test_a_token_for_someone_elses_draft_is_refused(srv: PageServer, http: httpx.AsyncClient) -> None:
    """Belt and braces: a token that names a draft owned by another user (minted behind issue's back)."""
    await srv.link(draft_id="d-a", user_id=OWNER)
    token = "T" * 43
    await srv.store.put_token(
        token_hash(token),
        purpose="password",
        subject="d-a|Linux",
        user_id=OTHER,
        expires_at=srv.clock() + timedelta(minutes=5),
    )
    response = await http.post("/password/api/open", json={"u": OTHER, "t": token})
    assert response.status_code == 410
    assert COOKIE not in http.cookies


async def test_a_token_of_another_purpose_is_refused(srv: PageServer, http: httpx.AsyncClient) -> None:
    token = "P" * 43
    await srv.store.put_token(
        token_hash(token),
        purpose="other",
        subject="d-p|Linux",
        user_id=OWNER,
        expires_at=srv.clock() + timedelta(minutes=5),
    )
    assert (await http.post("/password/api/open", json={"u": OWNER, "t": token})).status_code == 410


# ------------------------------------------------------------------------------------------------------ generate


async def test_generate_stores_a_valid_password_and_returns_it_once(srv: PageServer, http: httpx.AsyncClient) -> None:
    await opened(http, await srv.link(draft_id="draft-g", os_type="Windows"))
    response = await http.post("/password/api/generate", json={})
    assert response.status_code == 200
    generated = response.json()["password"]
    assert password_problems(generated, os_type="Windows") == []
    assert await srv.stored_password("draft-g") == generated
    assert srv.set_calls == ["draft-g"]
    again = await http.post("/password/api/generate", json={})
    assert again.status_code == 410 and generated not in again.text


# --------------------------------------------------------------------------------------------------- cross-site


async def test_cross_site_requests_are_refused(srv: PageServer, http: httpx.AsyncClient) -> None:
    await opened(http, await srv.link())
    payload = {"password": CANARY, "confirm": CANARY}
    cases = [
        ({"X-Requested-With": ""}, 403),
        ({"X-Requested-With": "XMLHttpRequest"}, 403),
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": srv.url.replace("127.0.0.1", "localhost")}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
    ]
    for headers, status in cases:
        response = await http.post("/password/api/set", json=payload, headers=headers)
        assert response.status_code == status, headers
        assert "access-control-allow-origin" not in response.headers
    form = await http.post("/password/api/set", data=payload)
    assert form.status_code == 415
    plain = await http.post(
        "/password/api/set", content=b'{"u":"x"}', headers={"Content-Type": "text/plain", "Origin": srv.url}
    )
    assert plain.status_code == 415
    preflight = await http.request("OPTIONS", "/password/api/set", headers={"Origin": "https://evil.example"})
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers
    assert await srv.stored_password() is None
    same_origin = await http.post("/password/api/set", json=payload, headers={"Origin": srv.url})
    assert same_origin.status_code == 200


async def test_bad_bodies_get_clear_messages(srv: PageServer, http: httpx.AsyncClient) -> None:
    await opened(http, await srv.link())
    not_json = await http.post("/password/api/set", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    a_list = await http.post("/password/api/set", json=[1, 2])
    assert a_list.status_code == 400
    missing = await http.post("/password/api/set", json={})
    assert missing.status_code == 400 and "password and its confirmation" in missing.json()["error"]
    huge = await set_password(http, "A" * 5000)
    assert huge.status_code == 413
    assert (await http.post("/password/api/info", json={})).status_code == 200


# -------------------------------------------------------------------------------------------------- at rest


async def test_the_database_file_never_holds_the_password_or_the_token(
    srv: PageServer, http: httpx.AsyncClient
) -> None:
    link = await srv.link()
    _, token = PageServer.parts(link)
    await opened(http, link)
    sid = http.cookies.get(COOKIE)
    assert sid and (await set_password(http)).status_code == 200
    await srv.store.checkpoint()
    files = [srv.db_path, srv.db_path.with_name(srv.db_path.name + "-wal")]
    raw = b"".join(p.read_bytes() for p in files if p.exists())
    assert token_hash(token).encode() in raw  # the check can see what is in the file
    assert CANARY.encode() not in raw and token.encode() not in raw and sid.encode() not in raw
    with sqlite3.connect(srv.db_path) as conn:
        blob = conn.execute("SELECT ciphertext FROM secrets WHERE key = 'draft:draft-1'").fetchone()[0]
    assert srv.box.decrypt(bytes(blob)).get_secret_value() == CANARY


async def test_without_on_set_and_with_a_failing_on_set_the_password_is_still_kept(
    srv: PageServer, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    srv.pages.on_set = None
    await opened(http, await srv.link())
    r = await set_password(http)
    assert r.status_code == 200 and await srv.stored_password() == CANARY

    async def broken(draft_id: str) -> None:
        raise RuntimeError(f"slack is down for {draft_id} {CANARY}")

    srv.pages.on_set = broken
    await opened(http, await srv.link("draft-2"))
    r = await set_password(http)
    assert r.status_code == 200 and await srv.stored_password("draft-2") == CANARY
    assert "the form was not refreshed" in caplog.text and CANARY not in caplog.text


async def test_no_secret_key_means_503_and_the_session_is_kept(srv: PageServer, http: httpx.AsyncClient) -> None:
    srv.workflow.secretbox = None
    await opened(http, await srv.link())
    r = await set_password(http)
    assert r.status_code == 503 and "ECSBOT_SECRET_KEY" in r.json()["error"]
    assert (await http.post("/password/api/info", json={})).status_code == 200


async def test_pages_is_built_the_way_runtime_builds_it(srv: PageServer) -> None:
    pages = PasswordPages(srv.store, srv.workflow, "https://bot.example.com")
    assert pages.ttl_seconds == 600 and pages.on_set is None and pages.signin is None
    assert (await pages.link_for(draft_id="x", user_id=OWNER, os_type="Linux")).startswith("https://bot.example.com/password#")
