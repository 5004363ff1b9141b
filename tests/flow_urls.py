"""URLconfs for the account flows allauth only routes when enabled at import.

allauth's ``account/urls.py`` and ``headless/urls.py`` read ``ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED``
and ``ACCOUNT_LOGIN_BY_CODE_ENABLED`` once, when first imported; the suite imports them with
the code flows off. :func:`urlconf_for_current_settings` builds a fresh copy of them under
the settings in force (inside ``override_settings``) and registers it as a module, for
``ROOT_URLCONF``.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import types

from django.urls import include, path

# The suite's own URLconf imports allauth's with the code flows off. Imported here, when this
# module is (at collection, under the suite's settings), never for the first time inside a
# test that turned the code flows on: that copy would be the one every later test routes to,
# in whatever order pytest-xdist hands the tests out.
import tests.urls  # noqa: F401

_serial = itertools.count(1)


def _fresh(module_name: str) -> types.ModuleType:
    """Run ``module_name``'s code again, as a module of its own (the imported one is kept)."""
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def urlconf_for_current_settings(*, headless: bool = False) -> str:
    from allauth.urls import build_provider_urlpatterns

    module = types.ModuleType(f"tests.flow_urls_{next(_serial)}")
    patterns = [path("accounts/", include(build_provider_urlpatterns()))]
    if headless:
        patterns.append(path("_allauth/", include(_fresh("allauth.headless.urls"))))
    else:
        patterns += [
            path("accounts/", include(_fresh("allauth.account.urls").urlpatterns)),
            path("accounts/3rdparty/", include("allauth.socialaccount.urls")),
            path("trakt/", include("django_trakt.site_urls")),
        ]
    module.urlpatterns = patterns  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    return module.__name__
