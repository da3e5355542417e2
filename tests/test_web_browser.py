"""The web view in a real browser: Debian's chromium driven by the playwright wheel.

Staff sign in through the link mailed to the relay sink and the "Sign in"
button, see the board and an incident; a link a mail scanner fetched first
still works, a used one does not sign in a second browser, and a form
posted from another site is refused. With ROOTNOTIFY_SCREENSHOTS=DIR the
board and the incident page are saved there (docs/ holds the README's).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.harness import COMPLETE_FORM, OTHER_CA_CONTACT, STAFF, make_mail
from tests.story import command, notify, send
from tests.web_harness import web_bot

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not "
                                "installed (.ci/run installs it)")
LATE_FORM = COMPLETE_FORM.replace("CA name: Example CA", "CA name: Other CA").replace(
    "2026-11-25T14:05:00Z", "2026-11-22T08:00:00Z")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ROOTNOTIFY_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sign_in(page, web, count: int = 1) -> str:
    """Ask for a link on the sign-in page; return the link from the mail."""
    page.goto(web.base_url + "/incidents")
    assert page.url == web.base_url + "/login"
    page.fill("input[name=address]", STAFF)
    page.click("text=Mail me a sign-in link")
    page.wait_for_selector("text=a sign-in link is on its way")
    return web.wait_for_link(count=count)


def test_staff_sign_in_by_the_mailed_link_and_read_the_board_and_an_incident(
        tmp_path, browser):
    with web_bot(tmp_path) as web:
        incident = notify(web.bot, web.sink)
        command(web.bot, web.sink, "/request certificate-list due 2026-11-30\n"
                                   "/request final-report due 2026-12-20", incident)
        send(web.bot, make_mail(OTHER_CA_CONTACT, "Security incident notification", LATE_FORM))
        other = web.sink.wait_for(web.sink.to(OTHER_CA_CONTACT, "Notification received"))[0]
        other_id = other.subject.split("[", 1)[1].split("]", 1)[0]
        context = browser.new_context(viewport={"width": 1200, "height": 800})
        page = context.new_page()
        link = _sign_in(page, web)
        # A mail scanner fetches the link before the person clicks it.
        scanned = httpx.get(link, timeout=20)
        assert scanned.status_code == 200 and "Sign in</button>" in scanned.text
        page.goto(link)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(web.base_url + "/incidents")
        cookie = next(c for c in context.cookies() if c["name"] == "rn_session")
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Lax", False)

        rows = page.locator("tbody tr")
        assert rows.count() == 2
        first = rows.nth(0).locator("td").all_inner_texts()
        assert first == [incident, "Example CA", "mis-issuance", "open", "2026-11-26 12:00 +00:00",
                         "on time", "certificate-list 2026-11-30 23:59 +00:00", "0"]
        second = rows.nth(1).locator("td").all_inner_texts()
        assert second[:2] == [other_id, "Other CA"] and second[5] == "late by 3 d 4 h"
        page.screenshot(path=str(_shots(tmp_path) / "web-board.png"), full_page=True)

        page.check("input[name=open]")
        page.select_option("select[name=ca]", "Other CA")
        page.click("button:has-text('Show')")
        assert page.locator("tbody tr").all_inner_texts()[0].startswith(other_id)

        page.goto(web.base_url + "/incidents")
        page.click(f"a:has-text('{incident}')")
        page.wait_for_url(web.base_url + f"/incidents/{incident}")
        text = page.inner_text("main")
        for expected in ("A CAA check skipped for IDN domains", "certificate-list",
                         "final-report", "Not received.", "Timeline", "acknowledgement"):
            assert expected in text
        mailto = page.get_attribute("a:has-text('Request certificate list')", "href")
        assert mailto.startswith("mailto:rootnotify@program.test?subject=Re%3A%20%5B"
                                 f"{incident}%5D")
        page.screenshot(path=str(_shots(tmp_path) / "web-incident.png"), full_page=True)
        context.close()


def test_a_used_link_does_not_sign_in_another_browser(tmp_path, browser):
    with web_bot(tmp_path) as web:
        first = browser.new_context()
        page = first.new_page()
        link = _sign_in(page, web)
        page.goto(link)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(web.base_url + "/incidents")
        second = browser.new_context()
        other = second.new_page()
        other.goto(link)
        assert "not valid any more" in other.inner_text("main")
        assert other.locator("button:has-text('Sign in')").count() == 0
        other.goto(web.base_url + "/incidents")
        assert other.url == web.base_url + "/login"
        first.close()
        second.close()


def test_a_form_posted_from_another_site_is_refused(tmp_path, browser):
    with web_bot(tmp_path) as web:
        context = browser.new_context()
        page = context.new_page()
        page.goto(web.base_url + "/login")  # the browser holds this site's form cookie
        # Another site's page, with a form aimed at ours (no script needed to lure a click).
        page.set_content(f"""<form method="post" action="{web.base_url}/login">
            <input name="address" value="{STAFF}"><input name="csrf" value="guessed">
            <button>Win a prize</button></form>""")
        page.click("text=Win a prize")
        page.wait_for_load_state()
        assert "CSRF check failed" in page.inner_text("main")
        assert web.sign_in_mails_queued() == 0
        context.close()


def test_the_pages_load_nothing_from_outside_and_fit_a_phone(tmp_path, browser):
    with web_bot(tmp_path) as web:
        notify(web.bot, web.sink)
        context = browser.new_context(viewport={"width": 390, "height": 844},
                                      java_script_enabled=False)
        page = context.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        link = _sign_in(page, web)
        page.goto(link)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(web.base_url + "/incidents")
        page.click("a:has-text('INC-2026-0001')")
        for path in ("/deadlines", "/certificates?q=example.com", "/quarantine", "/status",
                     "/sign-ins"):
            page.goto(web.base_url + path)
            assert page.inner_text("h1")
            # As wide as the phone: wide tables scroll inside their own box.
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        assert requested and all(u.startswith(web.base_url) for u in requested), requested
        context.close()
