"""Sign in with Trakt for Django, on top of django-allauth.

The version lives here and only here: ``pyproject.toml`` reads it (``dynamic``), and
the default User-Agent sent to Trakt names it.
"""

__version__ = "0.1.0"
