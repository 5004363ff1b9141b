"""The image host a worker process of tests/test_tasks_rq.py fetches from.

The guarded fetch takes only https hosts with public addresses, so a worker cannot reach a
loopback server: in the worker (``TRAKT_TEST_IMAGE_HOST`` set) ``responses`` answers
``https://walter-r2.trakt.test/`` with :data:`PICTURE` and lets every other request through
(the local Trakt), and each image request's User-Agent is pushed to a Redis list the test reads.
"""

from __future__ import annotations

import re

from django_trakt.testing.images import avatar_png

PICTURE = avatar_png("fetched by a worker")
IMAGE_URL = "https://walter-r2.trakt.test/avatars/worker.png"
REQUESTS_KEY = "django_trakt_test:image_requests"


def public_dns(host: str) -> list[str]:
    return ["93.184.216.34"]


def start(redis_url: str) -> None:
    import redis
    import responses

    connection = redis.Redis.from_url(redis_url)

    def answer(request):
        connection.rpush(REQUESTS_KEY, request.headers.get("User-Agent", ""))
        return 200, {"Content-Type": "image/png"}, PICTURE

    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.add_callback(responses.GET, IMAGE_URL, callback=answer)
    mock.add_passthru(re.compile(r"http://(127\.0\.0\.1|localhost)[:/]"))
    mock.start()
