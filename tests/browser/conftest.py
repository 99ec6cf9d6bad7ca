"""Fixtures for the browser tests: Debian's headless Chromium (Playwright, sync API) driving
the chat page of a real gunicorn service.

The gunicorn fixture is the e2e one: tests/ is on sys.path (tests/conftest.py is a rootdir
conftest in prepend import mode) and tests/e2e is the package `e2e`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import (
    REPO_ROOT,
    Service,
    ServiceFactory,
    _tail,
    service_factory,  # noqa: F401  (re-exported fixture)
)
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
T = 10_000  # ms: the timeout of every Playwright wait unless a test says otherwise
PASSWORD = "secret-pass-123"
RESULTS_DIR = REPO_ROOT / "test-results"


# --------------------------------------------------------------------------- reports


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the browser console of every page and the server logs."""
    rep = yield
    if rep.failed:
        lines = getattr(item, "_browser_console", None)
        if lines is not None:
            rep.sections.append(
                ("browser console", "\n".join(lines) if lines else "<no console messages>")
            )
        for name, path in getattr(item, "_e2e_logs", []):
            rep.sections.append((f"{name} log ({path})", _tail(Path(path))))
    return rep


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def chromium(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def console_log(request: pytest.FixtureRequest) -> list[str]:
    """Console messages and page errors of every page of the test (printed on failure)."""
    lines: list[str] = []
    request.node._browser_console = lines  # type: ignore[attr-defined]
    return lines


def watch_page(page: Page, label: str, lines: list[str]) -> None:
    def on_console(msg: ConsoleMessage) -> None:
        loc = msg.location or {}
        where = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
        lines.append(f"[{label}] console.{msg.type}: {msg.text}{where}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: lines.append(f"[{label}] pageerror: {exc}"))


@pytest.fixture
def new_context(chromium: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """new_context() -> a fresh browser context (one per user); all closed at teardown."""
    contexts: list[BrowserContext] = []

    def make() -> BrowserContext:
        ctx = chromium.new_context(viewport={"width": 1280, "height": 800})
        ctx.set_default_timeout(T)
        ctx.set_default_navigation_timeout(T)
        contexts.append(ctx)
        return ctx

    try:
        yield make
    finally:
        for ctx in reversed(contexts):
            for page in list(ctx.pages):
                page.close()
            ctx.close()


# --------------------------------------------------------------------------- service


@pytest.fixture
def chat_service(service_factory: ServiceFactory) -> Service:  # noqa: F811
    """One gunicorn, in-process broker (embedded mode), open registration."""
    return service_factory(
        "web",
        env={"CHAT_OPEN_REGISTRATION": "1", "CHAT_PRESENCE_GRACE_SECONDS": "1"},
    )


# --------------------------------------------------------------------------- the page


class ChatPage:
    """One tab of one signed-in user, addressed through the page's data-testid contract."""

    def __init__(self, page: Page, user: str, base: str) -> None:
        self.page = page
        self.user = user
        self.base = base
        self.dialogs: list[str] = []
        page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def tid(self, testid: str) -> Locator:
        return self.page.get_by_test_id(testid)

    # -- sign in ------------------------------------------------------------------

    def sign_in(self, password: str = PASSWORD, register: bool = True) -> ChatPage:
        self.page.goto(self.base + "/", timeout=T)
        self.tid("auth-username").fill(self.user, timeout=T)
        self.tid("auth-password").fill(password, timeout=T)
        self.tid("register" if register else "login").click(timeout=T)
        self.wait_signed_in()
        return self

    def wait_signed_in(self) -> None:
        expect(self.tid("app")).to_be_visible(timeout=T)
        expect(self.tid("me")).to_have_text(self.user, timeout=T)
        self.expect_live()

    def expect_live(self, timeout: int = T) -> None:
        expect(self.tid("conn")).to_have_attribute("data-state", "live", timeout=timeout)

    # -- sidebar ------------------------------------------------------------------

    def room_entry(self, room: str) -> Locator:
        return self.tid("room-list").locator(f'[data-room="{room}"]')

    def unread(self, room: str) -> Locator:
        return self.room_entry(room).get_by_test_id("unread")

    def expect_open(self, room: str) -> None:
        """The entry of `room` is the open one, and the only one.

        The contract says "the open one has aria-current"; the page puts it on the entry's
        button, inside the data-room element. Both are accepted here (see the report)."""
        sel = f'[data-room="{room}"]'
        current = self.tid("room-list").locator(
            f'{sel}[aria-current="page"], {sel} [aria-current="page"]'
        )
        expect(current, f"{self.user}: {room} is the open conversation").to_have_count(
            1, timeout=T
        )
        expect(self.tid("room-list").locator('[aria-current="page"]')).to_have_count(1, timeout=T)

    def join_room(self, room: str) -> None:
        """new-room: join the public room of that name, or create it."""
        self.tid("new-room").fill(room, timeout=T)
        self.tid("new-room-go").click(timeout=T)
        expect(self.room_entry(room)).to_have_count(1, timeout=T)
        self.expect_open(room)

    def open_room(self, room: str) -> None:
        self.room_entry(room).click(timeout=T)
        self.expect_open(room)

    def open_dm(self, user: str) -> None:
        self.tid("new-dm").fill(user, timeout=T)
        self.tid("new-dm-go").click(timeout=T)
        expect(self.tid("room-title")).to_contain_text(user, timeout=T)

    # -- messages -----------------------------------------------------------------

    @property
    def composer(self) -> Locator:
        return self.tid("composer")

    def send(self, text: str) -> None:
        self.composer.fill(text, timeout=T)
        self.composer.press("Enter", timeout=T)

    def messages(self) -> Locator:
        return self.tid("messages").get_by_test_id("message")

    def message_seq(self, seq: int) -> Locator:
        return self.tid("messages").locator(f'[data-testid="message"][data-seq="{seq}"]')

    def stored_message(self, text: str) -> Locator:
        """Messages (with a seq) whose message-text is exactly `text`."""
        exact = re.compile("^" + re.escape(text) + "$")
        return (
            self.tid("messages")
            .locator('[data-testid="message"][data-seq]')
            .filter(has=self.page.locator('[data-testid="message-text"]', has_text=exact))
        )

    def seqs(self) -> list[str]:
        return self.tid("messages").locator('[data-testid="message"][data-seq]').evaluate_all(
            "els => els.map(e => e.getAttribute('data-seq'))"
        )


@pytest.fixture
def signin(
    chat_service: Service,
    new_context: Callable[[], BrowserContext],
    console_log: list[str],
) -> Callable[..., ChatPage]:
    """signin(user, context=None, register=True) -> a ChatPage signed in through the UI.

    Without a context a new one is made (a new user = a new browser context); pass an
    existing context to open another tab of the same user (already signed in by cookie).
    """
    counts: dict[str, int] = {}

    def make(
        user: str, context: BrowserContext | None = None, register: bool = True
    ) -> ChatPage:
        ctx = context or new_context()
        counts[user] = counts.get(user, 0) + 1
        page = ctx.new_page()
        watch_page(page, f"{user}#{counts[user]}", console_log)
        chat = ChatPage(page, user, chat_service.base)
        if context is None:
            chat.sign_in(register=register)
        else:
            page.goto(chat_service.base + "/", timeout=T)
            chat.wait_signed_in()
        return chat

    return make


def expect_cleared(locator: Locator, timeout: int, what: str) -> float:
    """Wait until every element of `locator` is hidden or has empty text (or none exists).

    Returns the seconds it took."""
    page = locator.page
    start = time.monotonic()
    deadline = start + timeout / 1000
    state: list[dict[str, Any]] = []
    while True:
        state = locator.evaluate_all(
            """els => els.map(e => ({
                visible: !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length)
                         && getComputedStyle(e).visibility !== 'hidden',
                text: e.textContent.trim()}))"""
        )
        if all(not s["visible"] or s["text"] == "" for s in state):
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what}: still shown after {timeout / 1000:.1f}s: {state}"
            )
        page.wait_for_timeout(100)
