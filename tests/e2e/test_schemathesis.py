"""Schemathesis against a real gunicorn: the OpenAPI document (chat/openapi.py) and the
server agree.

Property-based requests from the document, positive and negative, over every operation
except the few excluded below, with all of Schemathesis's checks: no server errors,
documented status codes, content types and headers, response bodies that match their
schemas, invalid data refused and valid data accepted, 405 with `Allow` for methods that
are not there, and requests without credentials refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from chat.openapi import build_document

from .conftest import ServiceFactory

pytestmark = pytest.mark.e2e

PASSWORD = "schemathesis-pass-1"
MAX_EXAMPLES = 30
# The deadline for the whole Schemathesis run; it takes about 20 s on 2 cores.
RUN_TIMEOUT = 100.0

# Operations left out of the run, each with why.
EXCLUDED = {
    # text/event-stream responses never end: a stream stays open until the client goes.
    "streamMine": "a stream never ends",
    "streamUser": "a stream never ends",
    "streamRoom": "a stream never ends",
    "streamChannel": "a stream never ends",
    # These would revoke the run's own credentials: DELETE /api/session logs out the
    # session behind a cookie (and the bearer token would be next), and
    # DELETE /api/tokens/{token_id} revokes tokens by id, the run's own among them; every
    # later request would then be a 401.
    "logOut": "revokes the run's own credentials",
    "revokeToken": "revokes the run's own credentials",
}
EXCLUDED_UNTIL_FIXED: dict[str, str] = {}

# Names that exist, so that generated requests reach past the 404s now and then: alice
# (the run's caller) is in general, secret, alice~bob and the spare rooms; bob's lobby is
# public, his bobs-room private.
ROOMS = ["general", "secret", "lobby", "bobs-room", "alice~bob", "nowhere", "bob~alice"]
# POST .../leave gets rooms of its own: leaving general early would turn the rest of the
# run into 403 not_a_member.
SPARE_ROOMS = ["spare-1", "spare-2", "spare-3", "lobby"]
USERS = ["alice", "bob", "carol", "nobody"]

# The positive_data_acceptance check (every request that the document allows is
# accepted) is off where the API refuses schema-valid input by a rule JSON Schema cannot
# state or by the state of the data; these answers are documented 400s.
POSITIVE_DATA_EXCEPTIONS = {
    # A direct-message room `<a>~<b>` needs its two names different and in sorted order
    # (`bob~alice` is 400 invalid_name): no pattern says that.
    r"\{room\}": "direct-message room names must be in sorted order",
    # `seq` may be at most the timeline's last seq: 400 invalid_field beyond it.
    "^/api/notifications/read$": "seq past the end of the timeline",
    # Sending a direct message to oneself is 400 invalid_field.
    r"^/api/users/\{name\}/messages$": "a direct message to oneself",
    # A form's `payload` field is a string that must hold a JSON object with `text`.
    r"^/hooks/\{token\}$": "a form payload is JSON inside a string",
}


def _toml_list(values: list[object]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _config(path: Path, hook_tokens: list[str]) -> Path:
    """Schemathesis settings that the command line cannot express."""
    operations = "".join(
        f"""
[[operations]]
include-path-regex = {json.dumps(regex)}  # {why}
[operations.checks.positive_data_acceptance]
enabled = false
""" for regex, why in POSITIVE_DATA_EXCEPTIONS.items())
    path.write_text(
        f"""
# Every check is on by default (the command line's `--checks all` would override the
# per-operation settings below).
[checks]
enabled = true

[checks.negative_data_rejection]
# The defaults, and 413: a body or a message over its size limit is refused with 413.
expected-statuses = ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"]

[dictionaries.rooms]
values = {_toml_list(ROOMS)}

[dictionaries.spare]
values = {_toml_list(SPARE_ROOMS)}

[dictionaries.users]
values = {_toml_list(USERS)}

[dictionaries.seqs]
values = [1, 2, 3, 4, 5]

[dictionaries.hooks]
values = {_toml_list(hook_tokens)}

[parameters]
"path.room" = {{ dictionary = "rooms", probability = 0.5 }}
"path.name" = {{ dictionary = "users", probability = 0.5 }}
"path.seq" = {{ dictionary = "seqs", probability = 0.5 }}
"path.token" = {{ dictionary = "hooks", probability = 0.7 }}

[[operations]]
include-operation-id = "leaveRoom"
parameters = {{ "path.room" = {{ dictionary = "spare", probability = 0.8 }} }}
# Nor the document's example (general), nor the coverage phase's minimal names (`0`,
# `00`: rooms that createRoom's coverage cases made and the other operations' use).
[operations.phases.examples]
enabled = false
[operations.phases.coverage]
enabled = false
{operations}"""
    )
    return path


def _seed(svc, alice: str, bob: str) -> list[str]:
    """Rooms, messages and webhooks that the generated requests can hit; returns the
    webhooks' URL tokens."""
    a = svc.api(alice)
    b = svc.api(bob)
    a.create_room("general", title="General")
    a.create_room("secret", private=True)
    for room in SPARE_ROOMS[:-1]:
        a.create_room(room)
    b.create_room("lobby")
    b.create_room("bobs-room", private=True)
    for room, who in (("general", a), ("lobby", b)):
        who.post_message(room, "first")
        who.post_message(room, "second, @carol")
    assert a.post("/api/rooms/general/members", {"username": "bob"}).status_code == 201
    b.post_message("general", "from bob, @alice")
    assert a.post("/api/users/bob/messages", {"text": "hi bob"}).status_code == 201
    assert a.post("/api/users/alice/notifications", {"title": "seeded"}).status_code == 201
    tokens = []
    for name, signed in (("ci", False), ("signed", True)):
        r = a.post("/api/rooms/general/webhooks", {"name": name, "signed": signed})
        assert r.status_code == 201, r.text
        tokens.append(r.json()["url"].removeprefix("/hooks/"))
    return tokens


def test_schemathesis_run(service_factory: ServiceFactory, tmp_path: Path) -> None:
    svc = service_factory()
    alice = svc.create_user("alice", password=PASSWORD)
    bob = svc.create_user("bob", password=PASSWORD)
    svc.create_user("carol", password=PASSWORD)
    hook_tokens = _seed(svc, alice, bob)

    document = build_document()
    served = requests.get(svc.base + "/api/openapi.json", timeout=10)
    excluded = {**EXCLUDED, **EXCLUDED_UNTIL_FIXED}
    if served.status_code == 200:
        assert served.json() == json.loads(json.dumps(document))
    else:
        # The blueprint is not registered in create_app yet: test the rest of the API
        # from the same document.
        excluded["getOpenApiDocument"] = "not registered in create_app"
        excluded["getApiDocs"] = "not registered in create_app"
    schema_path = tmp_path / "openapi.json"
    schema_path.write_text(json.dumps(document))

    cmd = [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(_config(tmp_path / "schemathesis.toml", hook_tokens)),
        "run", str(schema_path),
        "--url", svc.base,
        "--header", f"Authorization: Bearer {alice}",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", "20261204",
        # One worker: with two, Hypothesis describing its strategies from two threads at
        # once trips CPython 3.11's parser ("AST constructor recursion depth mismatch").
        "--workers", "1",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--no-color",
        "--continue-on-failure",
        "--report", "junit",
        "--report-junit-path", str(tmp_path / "junit.xml"),
    ]
    for op_id in excluded:
        cmd += ["--exclude-operation-id", op_id]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    started = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=RUN_TIMEOUT,
                             check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else \
            (exc.stdout or "")
        pytest.fail(f"schemathesis ran over {RUN_TIMEOUT}s:\n{out[-20000:]}")
    elapsed = time.monotonic() - started
    (tmp_path / "schemathesis-output.txt").write_text(res.stdout + res.stderr)
    report = f"exit {res.returncode} after {elapsed:.0f}s\n{res.stdout[-30000:]}\n" \
             f"{res.stderr[-5000:]}"
    assert res.returncode == 0, report
    # Every operation that was not excluded was run.
    operation_ids = {op["operationId"] for item in document["paths"].values()
                     for op in item.values()}
    assert set(excluded) <= operation_ids, set(excluded) - operation_ids
    wanted = len(operation_ids) - len(excluded)
    assert re.search(rf"Selected: {wanted}/{len(operation_ids)}\b", res.stdout), report
    assert re.search(rf"Tested: {wanted}\b", res.stdout), report


HUGE = 2**63


@pytest.mark.parametrize(("method", "path"), [
    ("PATCH", f"/api/rooms/general/messages/{HUGE}"),  # editMessage
    ("DELETE", f"/api/rooms/general/messages/{HUGE}"),  # deleteMessage
    ("DELETE", f"/api/rooms/general/webhooks/{HUGE}"),  # deleteWebhook
    ("DELETE", f"/api/tokens/{HUGE}"),  # revokeToken (excluded anyway)
])
def test_huge_path_integers_are_404(make_user, method: str, path: str) -> None:
    alice = make_user("alice")
    assert alice.post("/api/rooms", {"name": "general"}).status_code == 201
    assert alice.post("/api/rooms/general/messages", {"text": "hi"}).status_code == 201
    r = alice.client.open(path, method=method, json={"text": "x"}, headers=alice.headers)
    assert r.status_code == 404, r.get_json()


def test_notification_url_with_bracket_is_400(make_user) -> None:
    alice = make_user("alice")
    for url in ("http://[", "https://a]b/", "http://[::1/x"):
        r = alice.post("/api/users/alice/notifications", {"title": "t", "url": url})
        assert r.status_code == 400, (url, r.status_code)
        assert r.get_json()["error"]["field"] == "url"
