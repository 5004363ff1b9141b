"""Settings of the processes ``bench/refresh.py`` measures: tests/rq_settings.py (RQ on Redis,
the local Trakt from the environment), logging as a production site has it (warnings and
errors to stderr; an INFO or DEBUG record is never made), and a count of the SQL statements
each process runs (``bench/query_count.py``), so every path is measured with the same settings.
"""

import query_count  # bench/ is on the path of the measured processes

from tests.rq_settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}

query_count.install()
