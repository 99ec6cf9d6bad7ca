"""Operator commands."""

import json


def test_send_tail_and_tokens(app, runner, make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    r = runner.invoke(args=["send", "general", "from the shell", "--as", "alice"])
    assert r.exit_code == 0, r.output
    sent = json.loads(r.stdout)
    assert (sent["seq"], sent["text"], sent["sender"]) == (1, "from the shell", "alice")
    assert runner.invoke(args=["send", "general", "x", "--as", "ghost"]).exit_code != 0
    assert runner.invoke(args=["send", "nope", "x", "--as", "alice"]).exit_code != 0
    runner.invoke(args=["send", "general", "second", "--as", "alice"])

    r = runner.invoke(args=["tail", "general", "--last-event-id", "0", "--no-follow"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(e["seq"], e["text"]) for e in lines] == [(1, "from the shell"), (2, "second")]
    r = runner.invoke(args=["tail", "general", "--last-event-id", "1", "--no-follow"])
    assert [json.loads(line)["seq"] for line in r.stdout.splitlines()] == [2]
    r = runner.invoke(args=["tail", "user:alice", "--last-event-id", "0", "--no-follow"])
    assert r.exit_code == 0
    assert runner.invoke(args=["tail", "nope", "--no-follow"]).exit_code != 0

    r = runner.invoke(args=["list-tokens", "alice"])
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [row[1] for row in rows] == ["test"]
    assert alice.token not in r.stdout
    r = runner.invoke(args=["revoke-token", rows[0][0]])
    assert r.exit_code == 0, r.output
    assert alice.get("/api/me").status_code == 401
    assert runner.invoke(args=["revoke-token", "999"]).exit_code != 0


def test_tail_refuses_a_negative_cursor_or_interval(runner):
    r = runner.invoke(args=["tail", "general", "--last-event-id", "-1", "--no-follow"])
    assert r.exit_code == 2 and "-1" in r.output
    r = runner.invoke(args=["tail", "general", "--interval", "0", "--no-follow"])
    assert r.exit_code == 2
