"""Liveness and readiness, against a real redis-server for the broker check."""

from chat import create_app


def test_healthz_and_readyz_embedded(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_while_redis_is_down_and_when_shutting_down(tmp_path, redis_server):
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "REDIS_URL": redis_server.url,
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}"})
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200
        redis_server.kill9()
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.get_json()["checks"] == {"database": "ok", "broker": "unavailable"}
        assert client.get("/healthz").status_code == 200
        redis_server.start()
        assert client.get("/readyz").status_code == 200
        app.extensions["chat"].hub.shutdown()
        r = client.get("/readyz")
        assert r.status_code == 503 and r.get_json()["checks"]["worker"] == "shutting down"
    finally:
        app.extensions["chat"].broker.close()
        app.extensions["chat"].store.dispose()
