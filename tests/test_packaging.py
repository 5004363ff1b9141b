"""Ship what we test: the sdist and wheel hold the app and nothing else, the wheel
installed on its own (no source tree) passes ``check`` and ``migrate``, and the models
need no new migration.

The ``packaging`` tests build with ``python -m build`` (the sdist first, then the wheel
*from the sdist*, so a file missing from the sdist breaks the wheel) and install the
wheel in a fresh virtualenv, its dependencies coming from the package index.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

import django_trakt

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_trakt"
NOT_SHIPPED = ("tests/", "example_project/", "bench/", "docs/")

# Building and installing do not touch the database: the PostgreSQL pass of
# tests/run.py (DATABASE_URL set) would only repeat a slow minute, so only the SQLite
# pass runs them.
packaging = pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs in the SQLite pass only")


def run(command: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", outdir, ROOT])
    (sdist,) = outdir.glob("*.tar.gz")
    (wheel,) = outdir.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def data_files() -> set[str]:
    """What the app needs besides its modules, relative to the repository root."""
    files = {"django_trakt/py.typed"}
    for folder in ("templates", "static", "locale"):
        files |= {path.relative_to(ROOT).as_posix() for path in (PACKAGE / folder).rglob("*") if path.is_file()}
    files |= {path.relative_to(ROOT).as_posix() for path in (PACKAGE / "migrations").glob("*.py")}
    return files


def modules() -> set[str]:
    return {path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}


def test_source_tree_has_the_files_the_wheel_must_carry():
    files = data_files()
    assert "django_trakt/migrations/0001_initial.py" in files
    assert {"django_trakt/locale/en/LC_MESSAGES/django.po", "django_trakt/locale/en/LC_MESSAGES/django.mo"} <= files
    assert any(name.startswith("django_trakt/templates/django_trakt/") for name in files)
    assert any(name.startswith("django_trakt/static/django_trakt/") for name in files)


@pytest.mark.django_db
def test_models_need_no_new_migration():
    # Raises SystemExit(1) and prints the missing operations when a model changed
    # without its migration.
    call_command("makemigrations", "django_trakt", check=True, dry_run=True, verbosity=1)


@pytest.mark.packaging
@packaging
def test_wheel_holds_the_app_with_its_data_and_nothing_else(dist):
    wheel = dist["wheel"]
    assert wheel.name == f"django_trakt-{django_trakt.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    dist_info = f"django_trakt-{django_trakt.__version__}.dist-info/"

    assert data_files() - names == set(), "data files missing from the wheel"
    assert modules() - names == set(), "modules missing from the wheel"
    strays = {name for name in names if not name.startswith(("django_trakt/", dist_info))}
    assert strays == set()
    assert not [name for name in names if name.startswith(NOT_SHIPPED) or "/tests/" in name]
    assert not [name for name in names if "__pycache__" in name or name.endswith((".pyc", ".pyo"))]

    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}METADATA").decode()
    assert "Requires-Python: >=3.11" in metadata
    assert "Requires-Dist: django-allauth[socialaccount]>=65.21" in metadata
    assert "Classifier: Framework :: Django :: 6.1" in metadata
    assert "Typing :: Typed" in metadata


@pytest.mark.packaging
@packaging
def test_sdist_holds_what_rebuilds_the_wheel_and_no_project_internals(dist):
    sdist = dist["sdist"]
    top = f"django_trakt-{django_trakt.__version__}/"
    with tarfile.open(sdist) as archive:
        names = {member.name.removeprefix(top) for member in archive.getmembers() if member.isfile()}
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"} <= names
    assert data_files() - names == set()
    assert modules() - names == set()
    assert not [name for name in names if name.startswith(NOT_SHIPPED)]
    # The wheel of the `dist` fixture was built from this sdist, by `python -m build`.


MINIMAL_SETTINGS = """
import os

SECRET_KEY = "packaging-test-not-secret"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.sites",  # the scheduled refresh builds its redirect URI from the Site (W006)
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "django_trakt",
]
SITE_ID = 1
LOGIN_REDIRECT_URL = "/accounts/email/"  # the site has no home page (check W010)
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]
ROOT_URLCONF = "site_urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SITE_DB"]}}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_ADAPTER = "django_trakt.account_adapter.TraktAccountAdapter"
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_PROVIDERS = {
    "trakt": {
        "APP": {"client_id": os.environ["TRAKT_CLIENT_ID"], "secret": os.environ["TRAKT_CLIENT_SECRET"]},
    },
}
TRAKT_TOKEN_KEYS = os.environ["TRAKT_TOKEN_KEYS"].split(",")
"""

MINIMAL_URLS = """
from django.urls import include, path

urlpatterns = [path("accounts/", include("allauth.urls")), path("trakt/", include("django_trakt.site_urls"))]
"""

# Run in the installed site: the package comes from the virtualenv, its templates and
# catalog load, the provider is registered with allauth.
SMOKE = """
import pathlib, sys
import django_trakt
from allauth.socialaccount.providers import registry
from django.template.loader import get_template
from django.utils import translation

assert pathlib.Path(django_trakt.__file__).is_relative_to(sys.prefix), django_trakt.__file__
get_template("django_trakt/avatar.html")
assert registry.get_class("trakt") is not None
with translation.override("en"):
    translation.gettext("expired")
print("smoke ok")
"""


@pytest.mark.packaging
@packaging
def test_wheel_installs_alone_and_passes_check_and_migrate(dist, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # Without the caller's PYTHONPATH: on it, the source tree's django_trakt.egg-info (which
    # building the sdist writes) tells pip django-trakt 0.1.0 is installed, and pip skips the wheel.
    pip_env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", dist["wheel"]], env=pip_env)

    site = tmp_path / "site"
    site.mkdir()
    (site / "site_settings.py").write_text(textwrap.dedent(MINIMAL_SETTINGS))
    (site / "site_urls.py").write_text(textwrap.dedent(MINIMAL_URLS))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "site_settings",
        "PYTHONPATH": str(site),  # the site's modules, never the source tree
        "SITE_DB": str(tmp_path / "site.sqlite3"),
        "TRAKT_CLIENT_ID": "packaging-client-id",
        "TRAKT_CLIENT_SECRET": "packaging-client-secret",
        "TRAKT_TOKEN_KEYS": Fernet.generate_key().decode(),
    }
    django_admin = env_dir / "bin" / "django-admin"

    check = run([django_admin, "check", "--fail-level", "WARNING"], cwd=site, env=env)
    assert "no issues" in check.stdout
    run([django_admin, "migrate", "--noinput"], cwd=site, env=env)
    shown = run([django_admin, "showmigrations", "django_trakt"], cwd=site, env=env)
    assert "[X] 0001_initial" in shown.stdout
    run([django_admin, "makemigrations", "--check", "--dry-run", "django_trakt"], cwd=site, env=env)
    assert run([django_admin, "shell", "-c", SMOKE], cwd=site, env=env).stdout.splitlines()[-1] == "smoke ok"
