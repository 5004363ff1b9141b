"""Settings of the RQ worker processes of tests/test_tasks_rq.py (and bench/): the test settings,
plus RQ on this machine's Redis as the task backend and Redis as the shared cache.

The Redis database (``TRAKT_TEST_REDIS_URL``, default db 12) is the tests' own: they flush
only that one. The database, the local Trakt's URL and the media folder come from the
environment the test gives the worker.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

REDIS_URL = os.environ.get("TRAKT_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")

INSTALLED_APPS = [*INSTALLED_APPS, "django_rq"]
RQ_QUEUES = {"default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60}}
TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
TRAKT_TASK_BACKEND = "default"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "django_trakt_test",
    }
}
if os.environ.get("TRAKT_TEST_MEDIA_ROOT"):
    MEDIA_ROOT = os.environ["TRAKT_TEST_MEDIA_ROOT"]
if os.environ.get("TRAKT_TEST_REFRESH_RATE"):
    TRAKT_REFRESH_RATE = float(os.environ["TRAKT_TEST_REFRESH_RATE"])
# The tests' image host (tests/rq_image_host.py): https names of .trakt.test, "public" addresses.
TRAKT_IMAGE_HOSTS = [".trakt.test"]
TRAKT_IMAGE_RESOLVER = "tests.rq_image_host.public_dns"
if os.environ.get("TRAKT_TEST_IMAGE_HOST"):
    from tests import rq_image_host

    rq_image_host.start(REDIS_URL)

# Everything the app logs goes to the worker's stderr, which the tests scan for tokens.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django_trakt": {"handlers": ["stderr"], "level": "DEBUG"}},
}
