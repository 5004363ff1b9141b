"""Settings of the processes ``bench/refresh.py`` measures: tests/rq_settings.py (RQ on Redis,
the local Trakt from the environment), quiet logs, and a count of the SQL statements each
process runs (``bench/query_count.py``), so every path is measured with the same settings.
"""

import query_count  # bench/ is on the path of the measured processes

from tests.rq_settings import *  # noqa: F403
from tests.settings import LOGGING  # noqa: F401  (the tests' null handler, for every path alike)

query_count.install()
