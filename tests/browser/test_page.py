"""End-to-end tests of the chat page: headless Chromium against a real gunicorn."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import urlparse

import pytest
import requests
from e2e.conftest import Service
from playwright.sync_api import Locator, Route, expect

from .conftest import RESULTS_DIR, ChatPage, T, expect_cleared

SignIn = Callable[..., ChatPage]


def _pair_in(signin: SignIn, room: str) -> tuple[ChatPage, ChatPage]:
    """alice creates `room` through new-room, bob joins it through new-room."""
    alice = signin("alice")
    alice.join_room(room)
    bob = signin("bob")
    bob.join_room(room)
    return alice, bob


def _seq_of(msg: Locator) -> int:
    seq = msg.get_attribute("data-seq", timeout=T)
    assert seq is not None and seq.isdigit(), f"data-seq should be a number, got {seq!r}"
    return int(seq)


def _csp_messages(lines: list[str]) -> list[str]:
    return [line for line in lines if "Content Security Policy" in line]


# --------------------------------------------------------------------------- 1


@pytest.mark.browser
def test_two_users_chat_live_in_a_room(signin: SignIn) -> None:
    alice, bob = _pair_in(signin, "general")
    expect(bob.room_entry("general")).to_have_attribute("data-kind", "room", timeout=T)

    # Hold alice's send request so that the optimistic (pending) message can be seen.
    held: list[Route] = []

    def is_send(url: str) -> bool:
        return urlparse(url).path.endswith("/messages")

    def hold(route: Route) -> None:
        if route.request.method == "POST":
            held.append(route)
        else:
            route.continue_()

    alice.page.route(is_send, hold)
    alice.composer.fill("hello bob", timeout=T)
    alice.composer.press("Enter", timeout=T)

    mine = alice.messages().filter(has_text="hello bob")
    expect(mine).to_have_count(1, timeout=T)
    expect(mine).to_have_attribute("data-pending", "true", timeout=T)
    assert mine.get_attribute("data-seq", timeout=T) is None, "a pending message has no data-seq"
    expect(alice.composer).to_have_value("", timeout=T)
    deadline = time.monotonic() + T / 1000
    while not held and time.monotonic() < deadline:
        alice.page.wait_for_timeout(50)
    assert len(held) == 1, f"expected one POST .../messages from the page, saw {len(held)}"
    held[0].continue_()
    alice.page.unroute(is_send, hold)

    sent = alice.stored_message("hello bob")
    expect(sent).to_have_count(1, timeout=T)
    expect(sent).not_to_have_attribute("data-pending", "true", timeout=T)
    expect(sent).not_to_have_attribute("data-failed", "true", timeout=T)
    seq = _seq_of(sent)

    got = bob.message_seq(seq)
    expect(got).to_have_count(1, timeout=T)
    expect(got).to_have_attribute("data-sender", "alice", timeout=T)
    expect(got.get_by_test_id("message-sender")).to_contain_text("alice", timeout=T)
    expect(got.get_by_test_id("message-text")).to_have_text("hello bob", timeout=T)

    # Shift+Enter is a newline in the composer, Enter sends.
    alice.composer.click(timeout=T)
    alice.composer.press_sequentially("line one", timeout=T)
    alice.composer.press("Shift+Enter", timeout=T)
    alice.composer.press_sequentially("line two", timeout=T)
    expect(alice.composer).to_have_value("line one\nline two", timeout=T)
    alice.composer.press("Enter", timeout=T)
    expect(alice.composer).to_have_value("", timeout=T)

    multi = bob.tid("messages").locator('[data-testid="message"][data-seq]').filter(
        has_text="line two"
    )
    expect(multi).to_have_count(1, timeout=T)
    expect(multi).to_have_attribute("data-sender", "alice", timeout=T)
    expect(multi.get_by_test_id("message-text")).to_have_js_property(
        "innerText", "line one\nline two", timeout=T
    )
    own_multi = alice.tid("messages").locator('[data-testid="message"][data-seq]').filter(
        has_text="line two"
    )
    expect(own_multi.get_by_test_id("message-text")).to_have_js_property(
        "innerText", "line one\nline two", timeout=T
    )

    # The optimistic copy and the stream's copy are one message on each side.
    alice.page.wait_for_timeout(500)
    for chat in (alice, bob):
        expect(chat.messages().filter(has_text="hello bob")).to_have_count(1, timeout=T)
        expect(chat.messages().filter(has_text="line one")).to_have_count(1, timeout=T)
        seqs = chat.seqs()
        assert len(seqs) == len(set(seqs)), f"{chat.user} shows a seq twice: {seqs}"

    RESULTS_DIR.mkdir(exist_ok=True)
    bob.page.screenshot(path=str(RESULTS_DIR / "chat.png"), timeout=T)


# --------------------------------------------------------------------------- 2


@pytest.mark.browser
def test_direct_message_unread_then_read(signin: SignIn) -> None:
    alice = signin("alice")
    bob = signin("bob")
    bob.join_room("random")

    alice.open_dm("bob")
    alice.send("psst, bob")
    expect(alice.stored_message("psst, bob")).to_have_count(1, timeout=T)
    mine = alice.room_entry("alice~bob")
    expect(mine).to_have_attribute("data-kind", "dm", timeout=T)
    expect(mine).to_contain_text("bob", timeout=T)

    dm = bob.room_entry("alice~bob")
    expect(dm).to_have_count(1, timeout=T)
    expect(dm).to_have_attribute("data-kind", "dm", timeout=T)
    expect(dm).to_contain_text("alice", timeout=T)
    expect(dm).not_to_contain_text("alice~bob", timeout=T)
    expect(dm.get_by_test_id("presence-dot")).to_have_attribute("data-online", "true", timeout=T)
    expect(bob.unread("alice~bob")).to_be_visible(timeout=T)
    expect(bob.unread("alice~bob")).to_have_text("1", timeout=T)
    expect(bob.page).to_have_title("(1) Chat", timeout=T)
    bob.expect_open("random")
    expect(bob.stored_message("psst, bob")).to_have_count(0, timeout=T)

    bob.open_room("alice~bob")
    got = bob.stored_message("psst, bob")
    expect(got).to_have_count(1, timeout=T)
    expect(got).to_have_attribute("data-sender", "alice", timeout=T)
    expect(bob.tid("room-title")).to_contain_text("alice", timeout=T)
    expect_cleared(bob.unread("alice~bob"), T, "bob's unread badge on the opened DM")
    expect(bob.page).to_have_title("Chat", timeout=T)


# --------------------------------------------------------------------------- 3


@pytest.mark.browser
def test_unread_and_read_state_sync_between_two_tabs(signin: SignIn) -> None:
    alice, tab1 = _pair_in(signin, "general")
    tab1.join_room("random")
    tab2 = signin("bob", context=tab1.page.context)
    tab2.open_room("random")
    tab1.expect_open("random")
    for tab in (tab1, tab2):
        expect_cleared(tab.unread("general"), T, f"{tab.user}: general unread before any message")
        expect(tab.page).to_have_title("Chat", timeout=T)

    alice.send("news for bob")
    expect(alice.stored_message("news for bob")).to_have_count(1, timeout=T)

    for n, tab in enumerate((tab1, tab2), 1):
        badge = tab.unread("general")
        expect(badge, f"tab {n}: general's unread badge").to_be_visible(timeout=T)
        expect(badge, f"tab {n}: general's unread badge").to_have_text("1", timeout=T)
        expect(tab.page, f"tab {n}: title").to_have_title("(1) Chat", timeout=T)

    tab1.page.bring_to_front()
    tab1.open_room("general")
    expect(tab1.stored_message("news for bob")).to_have_count(1, timeout=T)
    expect_cleared(tab1.unread("general"), T, "tab 1: general's badge once opened")
    expect(tab1.page).to_have_title("Chat", timeout=T)

    # The read marker reaches the other tab through the server (a `read` event).
    expect_cleared(tab2.unread("general"), 5000, "tab 2: general's badge after tab 1 read it")
    expect(tab2.page, "tab 2: title after tab 1 read general").to_have_title(
        "Chat", timeout=5000
    )
    tab2.expect_open("random")


# --------------------------------------------------------------------------- 4


@pytest.mark.browser
def test_typing_indicator_shows_and_clears(signin: SignIn) -> None:
    alice, bob = _pair_in(signin, "general")
    typing = bob.tid("typing")
    expect_cleared(typing, T, "bob's typing indicator before anyone types")

    # Typing without sending: shown, then gone once the typing state expires (~6 s).
    alice.composer.click(timeout=T)
    alice.composer.press_sequentially("hel", delay=50, timeout=T)
    expect(typing).to_be_visible(timeout=T)
    expect(typing).to_contain_text("alice is typing", timeout=T)
    expect(alice.tid("typing")).not_to_contain_text("alice", timeout=T)
    took = expect_cleared(typing, 12_000, "bob's typing indicator after alice stopped typing")
    assert took > 0.5, f"the typing indicator vanished after only {took:.2f}s"

    # Typing again, then sending: it clears with the message, well before the expiry.
    alice.composer.press_sequentially("lo there", delay=50, timeout=T)
    expect(typing).to_contain_text("alice is typing", timeout=T)
    alice.composer.press("Enter", timeout=T)
    expect(bob.stored_message("hello there")).to_have_count(1, timeout=T)
    expect_cleared(typing, 3000, "bob's typing indicator after alice's message arrived")


# --------------------------------------------------------------------------- 5


@pytest.mark.browser
def test_message_text_is_never_html(signin: SignIn, console_log: list[str]) -> None:
    alice, bob = _pair_in(signin, "general")
    payloads = [
        "<img src=x onerror=alert(1)>",
        "@bob <b>bold</b><img src=x onerror=alert(2)><script>alert(3)</script>",
    ]
    for payload in payloads:
        alice.send(payload)
    for chat in (bob, alice):
        for payload in payloads:
            msg = chat.stored_message(payload)
            expect(msg, f"{chat.user} sees the payload as text").to_have_count(1, timeout=T)
            expect(msg.get_by_test_id("message-text")).to_have_text(payload, timeout=T)
    # The viewer's mention is highlighted without turning the rest into HTML.
    expect(bob.stored_message(payloads[1]).locator("mark")).to_have_text("@bob", timeout=T)

    bob.page.wait_for_timeout(1000)  # an injected onerror would have fired by now
    for chat in (alice, bob):
        for tag in ("img", "script", "b"):
            n = chat.tid("messages").locator(tag).count()
            assert n == 0, f"{chat.user}: {n} <{tag}> element(s) inside messages"
        assert chat.dialogs == [], f"{chat.user}: dialogs opened: {chat.dialogs}"
    assert _csp_messages(console_log) == [], "the page tripped its own CSP"


# --------------------------------------------------------------------------- 6


@pytest.mark.browser
def test_server_restart_reconnects_without_loss_or_duplicates(
    chat_service: Service, signin: SignIn
) -> None:
    svc = chat_service
    alice, bob = _pair_in(signin, "general")
    alice.send("before the restart")
    expect(bob.stored_message("before the restart")).to_have_count(1, timeout=T)
    bob.send("ack")
    expect(alice.stored_message("ack")).to_have_count(1, timeout=T)

    svc.stop()  # SIGTERM: streams end cleanly, then the master exits
    assert svc.proc is not None and svc.proc.poll() is not None
    for chat in (alice, bob):
        conn = chat.tid("conn")
        expect(conn, f"{chat.user}: conn while the server is down").to_have_attribute(
            "data-state", "reconnecting", timeout=T
        )
        expect(conn).to_contain_text("Reconnecting", timeout=T)
    token = svc.create_token("alice")  # the CLI works on the database meanwhile

    svc.start()  # same port, same database
    api = svc.api(token)
    posted = [api.post_message("general", f"after the restart {i}") for i in range(3)]

    for chat in (bob, alice):
        chat.expect_live(timeout=20_000)
        expect(chat.tid("conn")).to_contain_text("Live", timeout=T)
    for msg in posted:
        for chat in (bob, alice):
            el = chat.message_seq(msg["seq"])
            expect(el, f"{chat.user}: message seq {msg['seq']}").to_have_count(1, timeout=T)
            expect(el.get_by_test_id("message-text")).to_have_text(msg["text"], timeout=T)
            expect(el).to_have_attribute("data-sender", "alice", timeout=T)

    bob.page.wait_for_timeout(1500)  # late duplicates (a replay after a reload) show up
    for chat in (bob, alice):
        for msg in posted:
            expect(chat.message_seq(msg["seq"])).to_have_count(1, timeout=T)
            expect(chat.stored_message(msg["text"])).to_have_count(1, timeout=T)
        expect(chat.stored_message("before the restart")).to_have_count(1, timeout=T)
        expect(chat.stored_message("ack")).to_have_count(1, timeout=T)
        seqs = chat.seqs()
        assert len(seqs) == len(set(seqs)), f"{chat.user} shows a seq twice: {seqs}"

    # And the page can still send after the restart.
    bob.send("still here")
    expect(alice.stored_message("still here")).to_have_count(1, timeout=T)


@pytest.mark.browser
def test_a_stream_refused_during_a_deploy_is_recreated(
    chat_service: Service, signin: SignIn
) -> None:
    """A non-200 makes the browser's EventSource give up for good: the page must make a
    new one (with backoff) and resume from where it was."""
    svc = chat_service
    alice, bob = _pair_in(signin, "general")
    bob.expect_live()
    refused: list[str] = []

    def deploying(route: Route) -> None:
        refused.append(route.request.url)
        route.fulfill(status=503, content_type="application/json",
                      body='{"error": {"code": "unavailable", "message": "deploying"}}')

    bob.page.route("**/api/stream*", deploying)
    svc.stop()  # the open stream ends; every reconnect now meets the 503
    expect(bob.tid("conn")).to_have_attribute("data-state", "reconnecting", timeout=T)
    token = svc.create_token("alice")
    svc.start()
    posted = svc.api(token).post_message("general", "sent during the deploy")
    deadline = time.monotonic() + 20
    while len(refused) < 2 and time.monotonic() < deadline:
        bob.page.wait_for_timeout(200)
    # The browser's own retry got the 503 and gave up; the page made a new EventSource
    # that resumes from the last id it saw.
    assert len(refused) >= 2, refused
    assert all("last_event_id=" in url for url in refused[1:]), refused
    bob.page.unroute("**/api/stream*")
    bob.expect_live(timeout=40_000)
    expect(bob.message_seq(posted["seq"])).to_have_count(1, timeout=T)
    bob.page.wait_for_timeout(1000)
    expect(bob.stored_message("sent during the deploy")).to_have_count(1, timeout=T)


@pytest.mark.browser
def test_edit_delete_and_retry_a_failed_send(signin: SignIn) -> None:
    alice, bob = _pair_in(signin, "general")
    alice.send("helo")
    mine = alice.stored_message("helo")
    expect(mine).to_have_count(1, timeout=T)
    seq = _seq_of(mine)
    mine.hover()
    mine.get_by_test_id("edit").click()
    alice.composer.fill("hello")
    alice.composer.press("Enter")
    for chat in (alice, bob):
        expect(chat.message_seq(seq).get_by_test_id("message-text")).to_have_text(
            "hello", timeout=T)
    alice.message_seq(seq).hover()
    alice.message_seq(seq).get_by_test_id("delete").click()
    for chat in (alice, bob):
        expect(chat.message_seq(seq)).to_have_attribute("data-deleted", "true", timeout=T)

    # The network fails for one send: the message is marked, and Retry delivers it once.
    def fail(route: Route) -> None:
        if route.request.method == "POST":
            route.abort()
        else:
            route.continue_()

    alice.page.route("**/api/rooms/general/messages", fail)
    alice.send("retry me")
    failed = alice.messages().and_(alice.page.locator('[data-failed="true"]'))
    expect(failed).to_have_count(1, timeout=T)
    alice.page.unroute("**/api/rooms/general/messages")
    failed.get_by_test_id("retry").click()
    expect(bob.stored_message("retry me")).to_have_count(1, timeout=T)
    expect(alice.stored_message("retry me")).to_have_count(1, timeout=T)
    expect(alice.page.locator('[data-failed="true"]')).to_have_count(0, timeout=T)


# --------------------------------------------------------------------------- 7


@pytest.mark.browser
def test_security_headers_and_no_inline_handlers(
    chat_service: Service, signin: SignIn, console_log: list[str]
) -> None:
    base = chat_service.base
    nonces = []
    for _ in range(2):
        with requests.get(base + "/", timeout=10) as resp:
            assert resp.status_code == 200
            csp = resp.headers.get("Content-Security-Policy", "")
            assert "nonce-" in csp, f"CSP without a nonce: {csp!r}"
            assert "frame-ancestors 'none'" in csp, f"CSP: {csp!r}"
            assert "'unsafe-inline'" not in csp, f"CSP: {csp!r}"
            assert resp.headers.get("X-Content-Type-Options") == "nosniff"
            html = resp.text
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce, csp
        nonces.append(nonce.group(1))

        handlers = re.findall(r"<[^>]*?\son[a-z]+\s*=[^>]*>", html, re.IGNORECASE)
        assert handlers == [], f"inline event handler attributes in the HTML: {handlers}"
        assert "javascript:" not in html.lower()
        for tag in re.findall(r"<script\b[^>]*>", html, re.IGNORECASE):
            if "src=" not in tag:
                assert f'nonce="{nonces[-1]}"' in tag, f"inline script without the nonce: {tag}"
        for src in re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", html, re.IGNORECASE):
            with requests.get(base + src if src.startswith("/") else src, timeout=10) as js:
                assert js.status_code == 200, (src, js.status_code)
                assert js.headers.get("X-Content-Type-Options") == "nosniff", src
                assert "javascript" in js.headers.get("Content-Type", ""), (
                    src, js.headers.get("Content-Type"))
    assert nonces[0] != nonces[1], "the CSP nonce must change per response"

    alice = signin("alice")
    alice.join_room("general")
    alice.send("hi")
    expect(alice.stored_message("hi")).to_have_count(1, timeout=T)
    inline = alice.page.evaluate(
        """() => [...document.querySelectorAll('*')].flatMap(e =>
              [...e.attributes].filter(a => a.name.toLowerCase().startsWith('on'))
                               .map(a => e.tagName.toLowerCase() + '[' + a.name + ']'))"""
    )
    assert inline == [], f"inline event handler attributes in the live DOM: {inline}"
    assert _csp_messages(console_log) == [], "the page tripped its own CSP"
