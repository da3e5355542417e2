"""The staff web view over real HTTP: sign-in by mailed link, the gate, CSRF, limits, pages.

A running bot with its web view on 127.0.0.1; the sign-in link is read from
the mail the bot sent to the relay sink; requests go over httpx.
"""

from __future__ import annotations

import html
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import func, select

from bot.clock import iso
from bot.operator.web import auth, pages
from storage.models import WebAttempt
from tests.harness import COMPLETE_FORM, OTHER_CA_CONTACT, STAFF, eventually, make_mail
from tests.story import command, notify, send
from tests.web_harness import (
    AT,
    ask_for_link,
    csrf_of,
    signed_in,
    use_link,
    web_bot,
)

STAFF_PAGES = ["/", "/incidents", "/incidents/INC-2026-0001", "/incidents/INC-2026-0001/export",
               "/incidents/INC-2026-0001/messages/1.eml", "/deadlines", "/certificates?q=x",
               "/quarantine", "/status", "/sign-ins", "/no-such-page"]


@pytest.fixture
def web(tmp_path):
    with web_bot(tmp_path) as w:
        yield w


def test_without_a_session_only_login_and_healthz_answer(web):
    notify(web.bot, web.sink)
    with web.client() as client:
        for path in STAFF_PAGES:
            page = client.get(path)
            assert (path, page.status_code, page.headers.get("location")) == (
                path, 303, "/login")
            data = client.get(path, headers={"Accept": "application/json"})
            assert (path, data.status_code) == (path, 401)
        assert client.post("/logout", data={"csrf": "x"}).status_code == 303
        assert client.get("/login").status_code == 200
        assert "not valid any more" in client.get("/login/not-a-token").text
        health = client.get("/healthz")
        assert (health.status_code, health.text) == (200, "ok")


def test_a_scanner_fetching_the_link_first_uses_nothing_and_the_link_works_once(web):
    with web.client() as staff:
        assert "a sign-in link is on its way" in ask_for_link(staff).text
        link = web.wait_for_link()
        assert link.startswith(web.base_url + "/login/")
        with web.client() as scanner:  # Safe Links and the like fetch every link, twice
            for _ in range(2):
                page = scanner.get(link)
                assert page.status_code == 200 and "Sign in</button>" in page.text
                assert "rn_session" not in page.headers.get("set-cookie", "")
            assert scanner.get("/incidents").status_code == 303
        answer = use_link(staff, link)
        assert (answer.status_code, answer.headers["location"]) == (303, "/incidents")
        assert staff.get("/incidents").status_code == 200
    with web.client() as second:
        page = second.get(link)
        assert "not valid any more" in page.text and "Sign in</button>" not in page.text
        again = second.post("/login/" + link.rsplit("/", 1)[1],
                            data={"csrf": csrf_of(second.get("/login").text)})
        assert again.status_code == 403 and "rn_session" not in again.headers.get("set-cookie", "")
        assert second.get("/incidents").status_code == 303


def test_a_link_works_for_15_minutes_and_the_session_cookie_is_httponly_and_samesite(web):
    with web.client() as late:
        ask_for_link(late)
        expired = web.wait_for_link()
        web.bot.clock.advance(minutes=15)
        assert use_link(late, expired).status_code == 403
    with web.client() as prompt:
        ask_for_link(prompt)
        fresh = web.wait_for_link(count=2)
        web.bot.clock.advance(minutes=14, seconds=59)
        answer = use_link(prompt, fresh)
        assert answer.status_code == 303
        cookie = next(v for k, v in answer.headers.multi_items()
                      if k == "set-cookie" and v.startswith("rn_session="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/"} <= flags
        assert "secure" not in flags  # base_url is http here
        assert f"max-age={int(auth.SESSION_LIFETIME.total_seconds())}" in flags


def _set_cookie(response, name: str) -> set[str]:
    """The attributes of the Set-Cookie header for `name`, lower-cased, and its value."""
    header = next(v for k, v in response.headers.multi_items()
                  if k == "set-cookie" and v.startswith(f"{name}="))
    first, *attributes = header.split(";")
    return {first.split("=", 1)[1], *(a.strip().lower() for a in attributes)}


def test_the_cookies_are_secure_when_base_url_is_https(tmp_path):
    # The server listens on plain loopback behind the https proxy that base_url names;
    # the client sends the Secure cookies back by hand, as the browser would over https.
    with web_bot(tmp_path, base_url="https://incidents.program.test") as web, \
            web.client() as client:
        form = client.get("/login")
        login_csrf = csrf_of(form.text)
        assert {"secure", "httponly", login_csrf} <= _set_cookie(form, "rn_login_csrf")
        cookie = {"Cookie": f"rn_login_csrf={login_csrf}"}
        assert client.post("/login", data={"csrf": login_csrf, "address": STAFF},
                           headers=cookie).status_code == 200
        link = web.wait_for_link()
        assert link.startswith("https://incidents.program.test/login/")
        answer = client.post("/login/" + link.rsplit("/", 1)[1], data={"csrf": login_csrf},
                             headers=cookie)
        assert answer.status_code == 303
        assert {"secure", "httponly", "samesite=lax"} <= _set_cookie(answer, "rn_session")


def test_every_post_without_its_csrf_token_is_refused_and_changes_nothing(web):
    with web.client() as client:
        client.get("/login")  # has its CSRF cookie; the forged form does not carry the token
        refused = client.post("/login", data={"address": STAFF})
        assert refused.status_code == 403 and "CSRF check failed" in refused.text
        assert client.post("/login", data={"address": STAFF, "csrf": "forged"}
                           ).status_code == 403
        assert web.sign_in_mails_queued() == 0
        ask_for_link(client)
        link = web.wait_for_link()
        token_path = "/login/" + link.rsplit("/", 1)[1]
        with web.client() as other:  # a token from another browser's page is not ours
            other_csrf = csrf_of(other.get("/login").text)
        assert client.post(token_path, data={"csrf": other_csrf}).status_code == 403
        assert auth.link_usable(web.bot.ctx, link.rsplit("/", 1)[1])
    staff = signed_in(web)
    assert staff.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert staff.get("/incidents").status_code == 200  # still signed in
    board = staff.get("/incidents").text
    out = staff.post("/logout", data={"csrf": csrf_of(board)})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert staff.get("/incidents").status_code == 303


def test_sign_in_requests_are_limited_per_address_and_per_client(web):
    address_limit, client_limit = (limit for _scope, limit, _w in auth.RATE_LIMITS)
    with web.client() as client:
        codes = [ask_for_link(client).status_code for _ in range(address_limit + 1)]
        assert codes == [200] * address_limit + [429]
        assert web.sign_in_mails_queued() == address_limit
        # Other addresses from the same client count against the client's limit.
        others = [ask_for_link(client, f"x{n}@nowhere.test").status_code
                  for n in range(client_limit - address_limit)]
        assert others == [200] * (client_limit - address_limit - 1) + [429]
    web.bot.clock.advance(hours=1, seconds=1)
    with web.client() as client:
        assert ask_for_link(client).status_code == 200
        assert web.sign_in_mails_queued() == address_limit + 1
    with web.bot.ctx.db.read() as session:  # the hour-old attempts are forgotten
        assert session.exec(select(func.count()).select_from(WebAttempt)).one() == 2


def test_every_sign_in_is_recorded_and_shown_to_staff(web):
    staff = signed_in(web)
    web.bot.clock.advance(minutes=3)
    signed_in(web, count=2)
    rows = staff.get("/sign-ins", headers={"Accept": "application/json"}).json()
    agent = rows[0]["user_agent"]
    assert agent.startswith("python-httpx/")
    assert rows == [
        {"address": STAFF, "at": iso(AT + timedelta(minutes=3)), "client": "127.0.0.1",
         "user_agent": agent},
        {"address": STAFF, "at": iso(AT), "client": "127.0.0.1", "user_agent": agent}]
    page = staff.get("/sign-ins").text
    assert f"<td>{STAFF}</td>" in page and "2026-11-26 12:03 +00:00" in page


def test_the_incident_page_offers_each_command_as_a_mailto_link_with_its_tag(web):
    incident = notify(web.bot, web.sink)
    staff = signed_in(web)
    page = staff.get(f"/incidents/{incident}").text
    links = [html.unescape(h.split('"', 1)[0]) for h in page.split('href="mailto:')[1:]]
    commands = {}
    for link in links:
        parts = urlsplit("mailto:" + link)
        query = parse_qs(parts.query)
        assert parts.path == web.bot.config.bot.address
        assert query["subject"] == [f"Re: [{incident}] staff command"]
        commands[query["body"][0]] = True
    assert "/request certificate-list due 2026-12-03" in commands  # a week after "now"
    assert "/request final-report due 2026-12-26" in commands
    assert {"/close", "/reopen", "/status", "/accept final-report"} <= set(commands)


def test_deadlines_list_overdue_first_and_the_board_filters_overdue(web):
    incident = notify(web.bot, web.sink)
    command(web.bot, web.sink, "/request certificate-list due 2026-11-27\n"
                               "/request final-report due 2026-12-20", incident)
    web.bot.clock.set(AT + timedelta(days=2))  # 2026-11-28: the list is a day late
    staff = signed_in(web)
    rows = staff.get("/deadlines", headers={"Accept": "application/json"}).json()
    assert [(r["incident"], r["kind"], r["due_at"], r["overdue"]) for r in rows] == [
        (incident, "certificate-list", "2026-11-27T23:59:59+00:00", True),
        (incident, "final-report", "2026-12-20T23:59:59+00:00", False)]
    page = staff.get("/deadlines").text
    overdue, _, rest = page.partition("<h2>This week</h2>")
    assert "certificate-list" in overdue and "final-report" not in overdue
    assert "final-report" in rest.partition("<h2>Later</h2>")[2]
    board = staff.get("/incidents?overdue=1", headers={"Accept": "application/json"}).json()
    assert [(r["id"], r["overdue"], r["next_due_kind"]) for r in board] == [
        (incident, 1, "certificate-list")]
    assert staff.get("/incidents?overdue=1&ca=Other%20CA",
                     headers={"Accept": "application/json"}).json() == []


def test_raw_messages_are_served_only_within_their_incident(web):
    incident = notify(web.bot, web.sink)
    staff = signed_in(web)
    data = staff.get(f"/incidents/{incident}", headers={"Accept": "application/json"}).json()
    inbound = next(m for m in data["messages"] if m["direction"] == "in")
    raw = staff.get(f"/incidents/{incident}/messages/{inbound['id']}.eml")
    assert raw.status_code == 200 and raw.headers["content-type"] == "message/rfc822"
    assert b"CA name: Example CA" in raw.content
    assert "attachment" in raw.headers["content-disposition"]
    ack = next(m for m in data["messages"] if m["kind"] == "acknowledgement")
    out = staff.get(f"/incidents/{incident}/messages/out-{ack['id']}.eml")
    assert out.status_code == 200 and f"[{incident}]".encode() in out.content
    for name in (inbound["id"], f"out-{ack['id']}"):  # another incident's number: not there
        assert staff.get(f"/incidents/INC-2026-0099/messages/{name}.eml").status_code == 404
    assert staff.get(f"/incidents/{incident}/messages/../1.eml").status_code == 404


def test_the_board_sorts_and_pages_over_every_incident(web, monkeypatch):
    first = notify(web.bot, web.sink)
    web.bot.clock.advance(hours=1)
    # story.notify would find the first acknowledgement again: the other CA notifies.
    send(web.bot, make_mail(OTHER_CA_CONTACT, "Security incident notification",
                            COMPLETE_FORM.replace("CA name: Example CA", "CA name: Other CA")))
    ack = web.sink.wait_for(web.sink.to(OTHER_CA_CONTACT, "Notification received"))[0]
    second = ack.subject.split("[", 1)[1].split("]", 1)[0]
    monkeypatch.setattr(pages, "BOARD_PAGE_SIZE", 1)
    staff = signed_in(web)

    def shown(url: str) -> list[str]:
        text = staff.get(url).text
        return [line.split('">', 1)[1].split("<", 1)[0]
                for line in text.split('<tr><td><a href="/incidents/')[1:]]

    assert shown("/incidents") == [first]
    assert shown("/incidents?page=2") == [second]
    assert shown("/incidents?page=9") == [second]  # past the end: the last page
    assert shown("/incidents?sort=notified&desc=1") == [second]
    page = staff.get("/incidents?sort=notified&desc=1").text
    assert "Page 1 of 2" in page and 'href="?sort=notified&amp;desc=1&amp;page=2"' in page
    # JSON is the command line's list: every row, whatever the page size.
    assert [r["id"] for r in staff.get("/incidents", headers={
        "Accept": "application/json"}).json()] == [first, second]


def test_certificate_search_finds_by_serial_fingerprint_and_domain_across_incidents(web):
    from cryptography.hazmat.primitives import hashes, serialization

    from tests.test_certificate_lists_e2e import list_mail, make_cert

    incident = notify(web.bot, web.sink)
    certs = [make_cert("a.example.com", ["a.example.com", "www.a.example.com"]),
             make_cert("b.example.com", ["b.example.com"])]
    bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    send(web.bot, list_mail(incident, "misissued.pem", "application/x-pem-file", bundle))
    web.sink.wait_for(web.sink.to("incidents@exampleca.test", "Certificate list recorded"))
    staff = signed_in(web)
    a_sha = certs[0].fingerprint(hashes.SHA256()).hex()
    a_serial = f"{certs[0].serial_number:x}"

    def search(q: str, where: str = "/certificates") -> dict:
        return staff.get(where, params={"q": q}, headers={"Accept": "application/json"}).json()

    by_sha = search(":".join(a_sha[i:i + 2].upper() for i in range(0, 64, 2)))
    assert (by_sha["kind"], [c["sha256"] for c in by_sha["certificates"]]) == ("sha256", [a_sha])
    by_serial = search("0x00" + a_serial.upper())  # leading zeros, as some lists write them
    assert (by_serial["kind"], [(c["incident"], c["serial"]) for c in by_serial["certificates"]]
            ) == ("serial", [(incident, a_serial)])
    by_domain = search("WWW.A.example.com")
    assert [c["sha256"] for c in by_domain["certificates"]] == [a_sha]
    assert by_domain["domains"] == [{"incident": incident, "name": "www.a.example.com"}]
    # Both certificates' names contain "example.com"; neither is named so: names match exactly.
    assert search("example.com")["certificates"] == []
    assert search("nothing.example.com")["certificates"] == []
    page = staff.get(f"/incidents/{incident}", params={"q": "b.example.com"}).text
    assert "b.example.com" in page and a_sha not in page


def test_healthz_answers_503_without_the_reasons_when_a_person_is_needed(web):
    web.sink.handler.reply = "554 5.7.1 refused"  # the relay refuses our mail for good
    send(web.bot, make_mail("incidents@exampleca.test", "Security incident notification",
                            COMPLETE_FORM))
    with web.client() as client:
        health = eventually("the refused mail to count", lambda: (
            answer if (answer := client.get("/healthz")).status_code == 503 else None))
        assert health.text == "needs attention"
