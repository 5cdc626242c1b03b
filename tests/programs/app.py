"""A tiny WSGI application for the huptime program tests, served by gunicorn.

    HUPTIME_TEST_VERSION_FILE=FILE gunicorn --pythonpath DIR -w 2 -b 127.0.0.1:PORT app:application

Each worker imports this module when it boots and reads the version from FILE then, so a reply
names the version and the worker that served it: `version=<v> pid=<worker pid>`. A new version is
served by workers booted after the file changed: a new gunicorn (a huptime restart), or new
workers of the same gunicorn (gunicorn's own reload on SIGHUP).
"""

import os

with open(os.environ["HUPTIME_TEST_VERSION_FILE"], encoding="utf-8") as version_file:
    VERSION = version_file.read().strip()


def application(environ, start_response):
    body = f"version={VERSION} pid={os.getpid()}\n".encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
