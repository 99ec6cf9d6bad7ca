"""Identity through the test client: registration, sessions, tokens, cross-site checks."""

from sqlalchemy import select

from chat.models import Credential, User


def test_register_login_me_logout(client):
    r = client.post("/api/users", json={"username": "alice", "password": "password123",
                                        "display_name": "Alice"})
    assert r.status_code == 201
    assert r.get_json()["username"] == "alice"
    assert r.get_json()["display_name"] == "Alice"
    assert client.get("/api/me").status_code == 401

    r = client.post("/api/session", json={"username": "alice", "password": "password123"})
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/api/me").get_json()["username"] == "alice"

    assert client.delete("/api/session").status_code == 200
    assert client.get("/api/me").status_code == 401


def test_logged_out_session_cookie_no_longer_works(client):
    client.post("/api/users", json={"username": "alice", "password": "password123"})
    r = client.post("/api/session", json={"username": "alice", "password": "password123"})
    token = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    client.delete("/api/session")
    client.set_cookie("chat_session", token)
    assert client.get("/api/me").status_code == 401


def test_wrong_password_and_unknown_user_look_the_same(client):
    client.post("/api/users", json={"username": "alice", "password": "password123"})
    a = client.post("/api/session", json={"username": "alice", "password": "nope-nope"})
    b = client.post("/api/session", json={"username": "nobody", "password": "nope-nope"})
    assert a.status_code == b.status_code == 401
    assert a.get_json() == b.get_json()


def test_duplicate_username_is_409(client):
    client.post("/api/users", json={"username": "alice", "password": "password123"})
    r = client.post("/api/users", json={"username": "alice", "password": "password456"})
    assert r.status_code == 409
    assert r.get_json()["error"]["code"] == "username_taken"


def test_registration_can_be_closed(app, client):
    app.config["CHAT_OPEN_REGISTRATION"] = False
    r = client.post("/api/users", json={"username": "alice", "password": "password123"})
    assert r.status_code == 403


def test_tokens_are_hashed_and_revocable(app, make_user):
    alice = make_user("alice")
    assert alice.get("/api/me").get_json()["username"] == "alice"
    with app.extensions["chat"].store.read() as s:
        stored = [c.secret_hash for c in s.scalars(select(Credential))]
        password_hash = s.scalar(select(User.password_hash))
    assert all(alice.token not in h and h not in alice.token for h in stored)
    assert password_hash and "password123" not in password_hash

    r = alice.post("/api/tokens", json={"name": "ci"})
    assert r.status_code == 201
    second = r.get_json()
    assert second["name"] == "ci" and second["token"].startswith("chat_")
    listed = alice.get("/api/tokens").get_json()["tokens"]
    assert {t["name"] for t in listed} == {"test", "ci"}
    assert all("token" not in t for t in listed)

    assert alice.delete(f"/api/tokens/{second['id']}").status_code == 204
    r = alice.client.get("/api/me", headers={"Authorization": f"Bearer {second['token']}"})
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "invalid_token"


def test_cannot_revoke_someone_elses_token(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    bob_tokens = bob.get("/api/tokens").get_json()["tokens"]
    r = alice.delete(f"/api/tokens/{bob_tokens[0]['id']}")
    assert r.status_code == 404
    assert bob.get("/api/me").status_code == 200


def test_bad_tokens_are_401(client, make_user):
    alice = make_user("alice")
    tampered = alice.token[:-2] + ("AA" if not alice.token.endswith("AA") else "BB")
    for header in (f"Bearer {tampered}", "Bearer nonsense", "Basic abc", "Bearer "):
        r = client.get("/api/me", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert "error" in r.get_json()


def test_query_token_only_accepted_on_streams(client, make_user):
    alice = make_user("alice")
    r = client.get(f"/api/me?access_token={alice.token}")
    assert r.status_code == 401


def test_cookie_requests_from_another_site_are_refused(client):
    client.post("/api/users", json={"username": "alice", "password": "password123"})
    client.post("/api/session", json={"username": "alice", "password": "password123"})
    r = client.post("/api/rooms", json={"name": "x"},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert r.get_json()["error"]["code"] == "cross_site_request"
    r = client.post("/api/rooms", json={"name": "x"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = client.post("/api/rooms", json={"name": "x"},
                    headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201
    # Reads are not state changes.
    assert client.get("/api/rooms", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_cli_create_user_and_token(app, runner):
    r = runner.invoke(args=["create-user", "ops", "--admin", "--password", "password123"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["create-token", "ops"])
    assert r.exit_code == 0
    token = r.stdout.strip()
    assert token.startswith("chat_") and "\n" not in token
    client = app.test_client()
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert me["username"] == "ops" and me["is_admin"] is True
    assert runner.invoke(args=["create-token", "ghost"]).exit_code != 0
    assert runner.invoke(args=["create-user", "Bad Name", "--password", "x"]).exit_code != 0


def test_cli_init_db(runner):
    r = runner.invoke(args=["init-db"])
    assert r.exit_code == 0


def test_origin_is_compared_by_host_so_a_tls_proxy_works(client):
    client.post("/api/users", json={"username": "alice", "password": "password123"})
    client.post("/api/session", json={"username": "alice", "password": "password123"})
    r = client.post("/api/rooms", json={"name": "x"}, headers={"Origin": "https://localhost"})
    assert r.status_code == 201
    r = client.post("/api/rooms", json={"name": "y"},
                    headers={"Origin": "https://localhost.evil.example"})
    assert r.status_code == 403


def test_names_with_a_trailing_newline_are_refused(client, runner):
    r = client.post("/api/users", json={"username": "bob\n", "password": "password123"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_name"
    assert runner.invoke(args=["create-user", "bob\n", "--password", "password123"]).exit_code
    assert runner.invoke(args=["create-user", "bob", "--password", "short"]).exit_code
