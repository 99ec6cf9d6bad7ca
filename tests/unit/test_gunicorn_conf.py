"""gunicorn.conf.py refuses setups that would lose messages or freeze workers."""

import importlib.util
import pathlib
from types import SimpleNamespace

import pytest

CONF = pathlib.Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def load_conf(monkeypatch, **env):
    for key in ("REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("gunicorn_conf", CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def server(workers):
    return SimpleNamespace(cfg=SimpleNamespace(workers=workers, worker_connections=100))


def test_gevent_worker_with_many_connections(monkeypatch):
    conf = load_conf(monkeypatch)
    assert conf.worker_class == "gevent"
    assert conf.worker_connections >= 10000
    assert conf.bind == "127.0.0.1:8000"
    assert conf.preload_app is False


@pytest.mark.parametrize("env", [{}, {"REDIS_URL": "memory://"},
                                 {"REDIS_URL": "redis://x", "DATABASE_URL": "sqlite:///x.db"},
                                 {"REDIS_URL": "redis://x"}])
def test_several_workers_need_redis_and_a_server_database(monkeypatch, env):
    conf = load_conf(monkeypatch, **env)
    with pytest.raises(SystemExit):
        conf.on_starting(server(2))
    conf.on_starting(server(1))


def test_several_workers_with_redis_and_postgresql_start(monkeypatch):
    conf = load_conf(monkeypatch, REDIS_URL="redis://x", DATABASE_URL="postgresql://db/chat")
    conf.on_starting(server(4))
