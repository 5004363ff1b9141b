"""The names a site imports live in public modules at the top of the package (issue 22, item 1).

The layers (``django_trakt/internal/``: ``core/``, ``api/``, ``links/``, ``pages/``) and the device
flow's modules are the implementation and may change in any release. :data:`PUBLIC` is the whole surface a site
needs: these modules and, in each, these names. Every ``django_trakt`` path the README, the
docs (``docs/design.md`` is for maintainers and excluded) and the example site name must be
one of them, so a doc cannot send a site into a layer again without this test failing.
"""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path

import pytest

from django_trakt import exceptions

ROOT = Path(__file__).resolve().parent.parent


def _is_error_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, exceptions.TraktError)


#: Public module -> the names a site may import from it. A module with ``__all__`` must list
#: exactly these; a URLconf has none (a site includes it).
PUBLIC: dict[str, frozenset[str]] = {
    "django_trakt": frozenset({"__version__"}),
    "django_trakt.client": frozenset({"TraktClient"}),
    "django_trakt.watchlists": frozenset({"WatchlistError", "WatchlistItem", "WatchlistResult", "get_watchlist"}),
    "django_trakt.tokens": frozenset(
        {"Outcome", "RefreshResult", "refresh_due_tokens", "refresh_token", "revoke_at_trakt", "rotate_keys", "unlink"}
    ),
    "django_trakt.redirect_uri": frozenset({"trakt_callback_url", "trakt_callback_url_for_host"}),
    # Every class of the one exception tree (see test_the_exception_tree_is_public_whole).
    "django_trakt.exceptions": frozenset(name for name, value in vars(exceptions).items() if _is_error_class(value)),
    "django_trakt.signals": frozenset({"link_revoked", "token_needs_reauthorization", "token_refreshed"}),
    "django_trakt.account_adapter": frozenset({"TraktAccountAdapter", "TraktAccountAdapterMixin"}),
    "django_trakt.models": frozenset({"TraktToken"}),
    "django_trakt.admin": frozenset({"TraktTokenInline"}),
    "django_trakt.tasks": frozenset(
        {
            "LINKS_PER_TASK",
            "enqueue_due",
            "enqueue_due_links",
            "refresh_link",
            "refresh_links",
            "revalidate_watchlist",
            "revoke_grant",
            "store_image",
        }
    ),
    "django_trakt.testing": frozenset({"EmulatedUser", "RecordedRequest", "TraktEmulator", "serve"}),
    # URLconfs: included by a site, nothing imported from them.
    "django_trakt.site_urls": frozenset(),
    "django_trakt.device.headless_urls": frozenset(),
}

#: Check ids (``django_trakt.E006``) are names of checks, not import paths.
CHECK_ID = re.compile(r"^django_trakt\.[EW]\d{3}$")
DOTTED = re.compile(r"\bdjango_trakt(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
FROM_IMPORT = re.compile(
    r"^[ \t]*from[ \t]+(django_trakt(?:\.\w+)*)[ \t]+import[ \t]+(?:\(([^)]*)\)|([\w \t,]+))", re.M
)


def documents() -> list[Path]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [path for path in docs if path.name != "design.md"]


def example_sources() -> list[Path]:
    return sorted((ROOT / "example_project").rglob("*.py"))


def offending(path: str) -> str | None:
    """Why the dotted ``path`` is not public, or ``None`` when it is."""
    if CHECK_ID.match(path):
        return None
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        module = ".".join(parts[:end])
        if module in PUBLIC:
            rest = parts[end:]
            if not rest or rest[0] in PUBLIC[module]:
                return None  # the module, or one of its names (and that name's attributes)
            return f"{rest[0]} is not a public name of {module}"
    return "not under a public module"


def referenced_paths(text: str) -> set[str]:
    """Every ``django_trakt`` path in ``text``: dotted mentions and ``from ... import`` names."""
    found = set(DOTTED.findall(text))
    for module, parenthesized, names in FROM_IMPORT.findall(text):
        listed = (parenthesized or names).replace("\n", ",").split(",")
        found.update(f"{module}.{name.split(' as ')[0].strip()}" for name in listed if name.strip())
    return found


def test_each_public_module_exports_exactly_its_names():
    for module_name, names in PUBLIC.items():
        module = importlib.import_module(module_name)
        declared = getattr(module, "__all__", None)
        if declared is not None:
            assert set(declared) == names, module_name
        missing = [name for name in names if not hasattr(module, name)]
        assert missing == [], f"{module_name} lacks {missing}"


def test_the_exception_tree_is_public_whole():
    # A site catches TraktError or any class below it: every one is public, and no other name.
    assert "TraktError" in PUBLIC["django_trakt.exceptions"]
    assert len(PUBLIC["django_trakt.exceptions"]) == len(exceptions.__all__) > 15


def test_public_modules_are_short():
    # A public module is a place to find names, not an implementation to read.
    for module_name in ("client", "watchlists", "tokens", "redirect_uri"):
        lines = (ROOT / "django_trakt" / f"{module_name}.py").read_text(encoding="utf-8").splitlines()
        assert len(lines) < 40, module_name


@pytest.mark.parametrize("document", documents(), ids=lambda path: path.name)
def test_the_docs_name_only_public_paths(document):
    text = document.read_text(encoding="utf-8")
    problems = {path: why for path in referenced_paths(text) if (why := offending(path))}
    assert problems == {}, document.name


def test_the_example_site_imports_only_public_paths():
    problems = []
    for path in example_sources():
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("django_trakt"):
                problems += [f"{path.name}: {node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                problems += [
                    f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("django_trakt")
                ]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                # Settings and include() name modules as strings.
                problems += [f"{path.name}: {found}" for found in DOTTED.findall(node.value)]
    assert [problem for problem in problems if offending(problem.split(": ", 1)[1])] == []


@pytest.mark.parametrize(
    ("text", "public"),
    [
        ("from django_trakt.internal.links.client import TraktClient", False),
        ("from django_trakt.links.client import TraktClient", False),  # deprecated: not for docs
        ("from django_trakt.client import TraktClient", True),
        ("from django_trakt.client import TraktClient, _Hidden", False),
        ("from django_trakt.watchlists import (\n    WatchlistItem,\n    get_watchlist,\n)\nresult = 1", True),
        ("from django_trakt.watchlists import get_watchlist\n\nresult = get_watchlist(user)", True),
        ("`django_trakt.internal.pages.watchlist.WatchlistResult`", False),
        ("`django_trakt.pages.watchlist.WatchlistResult`", False),
        ("import django_trakt.internal", False),
        ("`django_trakt.watchlists.WatchlistResult`", True),
        ('include("django_trakt.headless_urls")', False),
        ('include("django_trakt.device.headless_urls")', True),
        ("`django_trakt.tokens.refresh_token(token, force=False)`", True),
        ("`django_trakt.E006`", True),
        ("`django_trakt.client.TraktClient.for_user`", True),
        ("`django_trakt.internal.core.clock`", False),
    ],
)
def test_the_rule_tells_public_from_internal(text, public):
    assert all(offending(path) is None for path in referenced_paths(text)) is public, text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("django_trakt.headless_urls", "django_trakt.device.headless_urls"),
    ],
)
def test_moved_public_paths_still_import_with_a_warning(old, new):
    importlib.import_module(new)
    import sys

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old_module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)
    assert old_module.urlpatterns  # still a working URLconf


#: The previous release's documented paths (README and docs of 0.1) -> their public module.
#: Each old module is a shim until 0.3: a DeprecationWarning, and the very same objects.
OLD_PATHS: dict[str, str] = {
    "django_trakt.links.client": "django_trakt.client",
    "django_trakt.links.batch": "django_trakt.tokens",
    "django_trakt.links.refresh": "django_trakt.tokens",
    "django_trakt.links.revocation": "django_trakt.tokens",
    "django_trakt.links.rotation": "django_trakt.tokens",
    "django_trakt.links.redirect_uri": "django_trakt.redirect_uri",
    "django_trakt.pages.watchlist": "django_trakt.watchlists",
}
#: What the old docs imported from each old path (all of it must still be there).
OLD_NAMES: dict[str, set[str]] = {
    "django_trakt.links.client": {"TraktClient"},
    "django_trakt.links.batch": {"refresh_due_tokens"},
    "django_trakt.links.refresh": {"refresh_token", "RefreshResult", "Outcome"},
    "django_trakt.links.revocation": {"unlink"},
    "django_trakt.links.rotation": {"rotate_keys"},
    "django_trakt.links.redirect_uri": {"trakt_callback_url"},
    "django_trakt.pages.watchlist": {"get_watchlist", "WatchlistResult", "WatchlistItem", "WatchlistError"},
}


def _import_afresh(old: str) -> tuple[object, list[warnings.WarningMessage]]:
    import sys

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    return module, caught


@pytest.mark.parametrize(("old", "new"), OLD_PATHS.items())
def test_old_documented_paths_warn_and_give_the_public_objects(old, new):
    public = importlib.import_module(new)
    old_module, caught = _import_afresh(old)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1, [str(w.message) for w in caught]
    message = str(deprecations[0].message)
    assert message.startswith(f"{old} is deprecated and will be removed in 0.3: import ")
    assert message.endswith(f" from {new}")
    # The old module's names are the public module's, object for object, and the old docs'
    # names are all there.
    assert set(old_module.__all__) >= OLD_NAMES[old]
    assert set(old_module.__all__) <= PUBLIC[new]
    for name in old_module.__all__:
        assert getattr(old_module, name) is getattr(public, name), name
        assert name in message


def test_the_deprecation_points_at_the_importer():
    # stacklevel=2 from the shim's top level skips the import machinery: the warning names
    # the line that imported the old path, so a site finds it.
    import sys

    sys.modules.pop("django_trakt.links.client", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from django_trakt.links.client import TraktClient  # noqa: F401 (the import is the test)
    (warning,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert warning.filename == __file__


def test_the_old_packages_hold_only_the_shims():
    # Nothing else of the previous layout answers at the old place: other old modules were
    # never documented and are gone (their code is in django_trakt.internal).
    shims = {path.stem for path in (ROOT / "django_trakt" / "links").glob("*.py")} | {
        f"pages.{path.stem}" for path in (ROOT / "django_trakt" / "pages").glob("*.py")
    }
    documented = {old.removeprefix("django_trakt.").removeprefix("links.") for old in OLD_PATHS}
    assert shims - {"__init__", "pages.__init__"} == documented
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("django_trakt.links.crypto")
