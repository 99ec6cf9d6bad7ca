"""Entry for gunicorn: patch with gevent before anything else is imported."""

from gevent import config as gevent_config
from gevent import monkey

monkey.patch_all()
# Every stream is a greenlet; recording who spawned each one (and its stack) costs
# memory per connection and nothing here reads it.
gevent_config.track_greenlet_tree = False

from chat import create_app  # noqa: E402

app = create_app()
