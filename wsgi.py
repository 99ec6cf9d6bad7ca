"""Entry for gunicorn: patch with gevent before anything else is imported."""

from gevent import monkey

monkey.patch_all()

from chat import create_app  # noqa: E402

app = create_app()
