"""gunicorn.conf.py refuses setups that would lose messages or freeze workers."""

import importlib.util
import os
import pathlib
from types import SimpleNamespace

import pytest

CONF = pathlib.Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def load_conf(monkeypatch, **env):
    for key in ("REDIS_URL", "DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        # Set, then deleted: monkeypatch records the variable either way, so what
        # on_starting puts in os.environ is taken away again after the test.
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
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
    conf.on_exit(server(1))


def test_several_workers_with_redis_and_postgresql_start(monkeypatch):
    conf = load_conf(monkeypatch, REDIS_URL="redis://x", DATABASE_URL="postgresql://db/chat")
    conf.on_starting(server(4))
    conf.on_exit(server(4))


def test_the_metrics_directory_made_at_start_is_removed_at_exit(monkeypatch, tmp_path):
    conf = load_conf(monkeypatch)
    conf.on_starting(server(1))
    made = pathlib.Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert made.is_dir() and made.name.startswith("chat-metrics-")
    (made / "counter_1.db").write_bytes(b"x")
    conf.on_exit(server(1))
    assert not made.exists()
    # One the operator set is theirs: emptied of old samples at start, kept at exit.
    own = tmp_path / "metrics"
    conf = load_conf(monkeypatch, PROMETHEUS_MULTIPROC_DIR=str(own))
    own.mkdir()
    (own / "gauge_livesum_9.db").write_bytes(b"x")
    conf.on_starting(server(1))
    assert own.is_dir() and not list(own.iterdir())
    conf.on_exit(server(1))
    assert own.is_dir()
