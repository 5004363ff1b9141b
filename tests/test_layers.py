"""The package's layers, as docs/design.md draws them: no import runs from a lower layer up.

    site   the allauth contract and Django's conventions (provider, views, device/,
           urls, site_urls, admin, checks, apps, management/, ...)
    pages  what pages show: watchlists, images, their views, the template tags
    links  the link lifecycle: the stored tokens (models), crypto, refresh, batch, ...
    api    Trakt's API: HTTP, OAuth and device endpoints, token answers
    core   settings, exceptions, signals, the clock, the cache, numbers

``testing/`` (the local Trakt) stands apart: it imports nothing of the app, so a site can
use it against any version of its own code. Every import counts, those inside functions
too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "django_trakt"
LAYERS = ["core", "api", "links", "pages", "site"]
#: Top-level modules below the site layer; every other top-level module is "site".
TOP_LEVEL = {"__init__": "core", "conf": "core", "exceptions": "core", "signals": "core", "models": "links"}
#: Sub-packages and their layer.
PACKAGES = {"core": "core", "api": "api", "links": "links", "pages": "pages", "templatetags": "pages"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def layer_of(module: str) -> str:
    first = module.split(".")[0]
    if first == "testing":
        return "testing"
    if first in PACKAGES:
        return PACKAGES[first]
    return TOP_LEVEL.get(module, "site")


def _module_or_root(name: str) -> str:
    exists = (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()
    return name if exists else "__init__"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module relative to django_trakt)`` of every import of the app in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "django_trakt":
                # A module or sub-package of the app, or a name of its __init__ (__version__).
                found += [(node.lineno, _module_or_root(alias.name)) for alias in node.names]
            elif node.module.startswith("django_trakt."):
                found.append((node.lineno, node.module.removeprefix("django_trakt.")))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name.removeprefix("django_trakt."))
                for alias in node.names
                if alias.name.startswith("django_trakt.")
            ]
    return found


def sources() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts)


def test_no_import_runs_from_a_lower_layer_up():
    upward = []
    for path in sources():
        here = module_name(path)
        for line, target in imported_modules(path):
            source_layer, target_layer = layer_of(here), layer_of(target)
            if source_layer == "testing" or target_layer == "testing":
                continue  # checked below
            if LAYERS.index(target_layer) > LAYERS.index(source_layer):
                upward.append(f"{here} ({source_layer}) -> {target} ({target_layer}), line {line}")
    assert upward == []


def test_the_local_trakt_imports_nothing_of_the_app():
    for path in sources():
        if layer_of(module_name(path)) == "testing":
            assert [target for _line, target in imported_modules(path) if layer_of(target) != "testing"] == [], path


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("links.refresh", "links"),
        ("models", "links"),
        ("pages.watchlist", "pages"),
        ("templatetags.trakt", "pages"),
        ("api.oauth", "api"),
        ("core.clock", "core"),
        ("conf", "core"),
        ("provider", "site"),
        ("management.commands.refresh_trakt_tokens", "site"),
        ("testing.emulator", "testing"),
    ],
)
def test_modules_are_placed_in_their_layer(module, layer):
    assert layer_of(module) == layer


def test_the_rule_sees_lazy_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from django_trakt.pages import images\n    import django_trakt.links.refresh\n")
    assert imported_modules(sample) == [(2, "pages"), (3, "links.refresh")]
