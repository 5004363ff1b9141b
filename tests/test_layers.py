"""The package's layers, as docs/design.md draws them: no import runs from a lower layer up.

    site   the public modules (client, watchlists, tokens, redirect_uri), the allauth contract and
           Django's conventions (provider, views, device/,
           urls, site_urls, admin, checks, apps, management/, ...)
    pages  what pages show: watchlists, images, their views (internal/pages/), the template tags
    links  the link lifecycle: the stored tokens (models), crypto, refresh, batch, ... (internal/links/)
    api    Trakt's API: HTTP, OAuth and device endpoints, token answers (internal/api/)
    conf   settings, exceptions, signals
    core   the clock, the cache, numbers, the task seam (internal/core/): told how to read a
           setting, never importing conf

The layers below the site sit under ``internal/`` (allauth's convention: no compatibility
promise). ``links/`` and ``pages/`` at the top are the previous release's documented paths,
kept for one release: a "deprecated" layer that imports only the public modules and that
nothing of the app imports.

``testing/`` (the local Trakt) stands apart: it imports nothing of the app, so a site can
use it against any version of its own code. Every import counts, those inside functions
too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "django_trakt"
LAYERS = ["core", "conf", "api", "links", "pages", "site"]
#: Top-level modules below the site layer; every other top-level module is "site".
TOP_LEVEL = {"__init__": "core", "conf": "conf", "exceptions": "conf", "signals": "conf", "models": "links"}
#: Sub-packages and their layer.
PACKAGES = {"conf": "conf", "templatetags": "pages"}
#: The internal layers, ``internal.<layer>``.
INTERNAL = {"core": "core", "api": "api", "links": "links", "pages": "pages"}
#: The shims of the previous release's documented paths (removed in 0.3).
DEPRECATED = {"links", "pages"}
#: What the shims may import: the public modules, nothing else of the app.
PUBLIC_MODULES = {"client", "tokens", "redirect_uri", "watchlists"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def layer_of(module: str) -> str:
    first, _, rest = module.partition(".")
    if first == "testing":
        return "testing"
    if first == "internal":
        return INTERNAL.get(rest.split(".")[0], "core")  # internal/__init__.py: a docstring
    if first in DEPRECATED:
        return "deprecated"
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
            if "testing" in (source_layer, target_layer) or "deprecated" in (source_layer, target_layer):
                continue  # checked below
            if LAYERS.index(target_layer) > LAYERS.index(source_layer):
                upward.append(f"{here} ({source_layer}) -> {target} ({target_layer}), line {line}")
    assert upward == []


def test_the_local_trakt_imports_nothing_of_the_app():
    for path in sources():
        if layer_of(module_name(path)) == "testing":
            assert [target for _line, target in imported_modules(path) if layer_of(target) != "testing"] == [], path


def test_the_deprecated_shims_import_only_the_public_modules():
    shims = [path for path in sources() if layer_of(module_name(path)) == "deprecated"]
    assert len(shims) == 9  # links/ (package + 6 paths) and pages/ (package + watchlist)
    for path in shims:
        targets = {target for _line, target in imported_modules(path)}
        assert targets <= PUBLIC_MODULES, path


def test_nothing_of_the_app_imports_the_deprecated_shims():
    importers = [
        f"{module_name(path)} -> {target}, line {line}"
        for path in sources()
        if layer_of(module_name(path)) != "deprecated"
        for line, target in imported_modules(path)
        if layer_of(target) == "deprecated"
    ]
    assert importers == []


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("internal.links.refresh", "links"),
        ("models", "links"),
        ("internal.pages.watchlist", "pages"),
        ("templatetags.trakt", "pages"),
        ("internal.api.oauth", "api"),
        ("internal.core.clock", "core"),
        ("internal.core.cache", "core"),
        ("internal", "core"),
        ("links.client", "deprecated"),
        ("pages", "deprecated"),
        ("conf", "conf"),
        ("exceptions", "conf"),
        ("device.flow", "site"),
        ("client", "site"),
        ("watchlists", "site"),
        ("provider", "site"),
        ("management.commands.refresh_trakt_tokens", "site"),
        ("testing.emulator", "testing"),
    ],
)
def test_modules_are_placed_in_their_layer(module, layer):
    assert layer_of(module) == layer


def test_the_rule_sees_lazy_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    from django_trakt.internal.pages import images\n    import django_trakt.internal.links.refresh\n"
    )
    assert imported_modules(sample) == [(2, "internal.pages"), (3, "internal.links.refresh")]


def _is_module(name: str) -> bool:
    path = PACKAGE.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def module_edges(path: Path) -> set[str]:
    """Every module of the app ``path`` imports, by full dotted name below ``django_trakt``.

    Finer than :func:`imported_modules`: ``from django_trakt.internal.pages import images`` is an
    arrow to ``internal.pages.images``, not to ``internal.pages``. Relative imports are resolved too, and
    imports under ``if TYPE_CHECKING:`` count like any other: a cycle for the type checker is
    still two modules that cannot be understood one without the other.
    """
    here = module_name(path).split(".") if path.is_relative_to(PACKAGE) else [path.stem]
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            elif node.module and (node.module == "django_trakt" or node.module.startswith("django_trakt.")):
                module = node.module.removeprefix("django_trakt").lstrip(".")
            else:
                continue
            for alias in node.names:
                child = f"{module}.{alias.name}".strip(".")
                found.add(child if _is_module(child) else module or "__init__")
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.removeprefix("django_trakt.")
                for alias in node.names
                if alias.name.startswith("django_trakt.")
            )
    found.discard(".".join(here))
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module of the app and the modules it imports."""
    return {module_name(path): module_edges(path) for path in sources()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of ``graph`` (strongly connected groups of two or more modules), Tarjan's way."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycle_even_for_the_type_checker():
    # The local Trakt's app, in-process binding and server are typed against
    # testing/protocols.py, not against the TraktEmulator that builds them.
    assert import_cycles(import_graph()) == []


def test_the_cycle_rule_finds_cycles():
    graph = {
        "app": {"emulator", "state"},
        "emulator": {"app", "server", "state"},
        "server": {"emulator"},
        "state": set(),
        "pages": {"state"},
        "a": {"b"},
        "b": {"a"},
    }
    assert sorted(import_cycles(graph)) == [["a", "b"], ["app", "emulator", "server"]]


def test_the_cycle_rule_sees_type_checking_and_relative_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from django_trakt.internal.pages import images\n"
        "from django_trakt.internal.core.clock import now\n"
    )
    assert module_edges(sample) >= {"internal.pages.images", "internal.core.clock"}


#: Longest a module of the app may be (issue 22, item 3): past it, a module holds more than one concern.
MAX_MODULE_LINES = 400


def test_no_module_is_longer_than_the_limit():
    # The local Trakt (testing/) is a product of its own, and migrations are generated.
    long = {
        module_name(path): lines
        for path in sources()
        if layer_of(module_name(path)) != "testing"
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
