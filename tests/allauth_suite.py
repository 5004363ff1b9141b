"""allauth's own provider test suite, as shipped in the sdist of the installed django-allauth.

allauth's ``OAuth2TestsMixin`` (``tests/apps/socialaccount/base.py``, with its request
mocking in ``tests/mocking.py``) is the contract every allauth provider meets. It is in the
sdist only, not in the wheel, so :func:`load` downloads the sdist of the INSTALLED version
once (``pip download``, the package index is needed) into a cache directory outside the
repository, takes the two files from it verbatim, and imports them.

allauth's files import each other as ``tests.mocking``, and this suite's package is called
``tests`` too: they are imported as the package :data:`PACKAGE` instead, by rewriting their
``tests`` import statements (and nothing else) as they are compiled (:class:`_RetargetingLoader`).
The files on disk stay as allauth ships them; tracebacks point into them.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

#: The package allauth's test modules are imported as (``tests`` is ours).
PACKAGE = "allauth_provider_suite"
#: The files taken from the sdist: module name under PACKAGE -> path inside the sdist's folder,
#: in the order they are imported (base imports mocking).
FILES = {
    "mocking": "tests/mocking.py",
    "base": "tests/apps/socialaccount/base.py",
}


def allauth_version() -> str:
    return importlib.metadata.version("django-allauth")


def cache_dir(version: str) -> Path:
    """Where one version's files are kept: the user's cache (``XDG_CACHE_HOME``), never the repository."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "django-trakt-tests" / f"allauth-{version}"


def _download_sdist(version: str, into: Path) -> Path:
    """``pip download`` the sdist of django-allauth ``version`` into ``into``; its path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-binary",
        ":all:",
        "--no-deps",
        "--disable-pip-version-check",
        "--dest",
        str(into),
        f"django-allauth=={version}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    archives = sorted(into.glob("django[-_]allauth-*.tar.gz"))
    if done.returncode != 0 or len(archives) != 1:
        raise RuntimeError(
            f"Could not download the sdist of django-allauth {version} (allauth's provider tests are "
            f"only in the sdist; the package index is needed):\n{done.stdout}\n{done.stderr}"
        )
    return archives[0]


def _extract(archive: Path, target: Path) -> None:
    """The :data:`FILES` of the sdist into ``target``, each written whole (tmp file, then rename)."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as sdist:
        # The sdist's single top folder, e.g. "django_allauth-65.22.1/".
        top = sdist.getnames()[0].split("/")[0]
        for name, inner in FILES.items():
            member = sdist.extractfile(f"{top}/{inner}")
            if member is None:
                raise RuntimeError(f"{archive.name} has no file {inner}")
            partial = target / f".{name}.py.partial"
            partial.write_bytes(member.read())
            os.replace(partial, target / f"{name}.py")


def ensure_files(version: str) -> Path:
    """The folder holding allauth's files for ``version``, downloading them the first time."""
    target = cache_dir(version)
    if all((target / f"{name}.py").is_file() for name in FILES):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # A private download folder: test runs of several tox cells may fetch at the same time.
    with tempfile.TemporaryDirectory(dir=target.parent) as download:
        _extract(_download_sdist(version, Path(download)), target)
    return target


def _retarget_imports(source: str, filename: str) -> str:
    """``source`` with its ``from tests.x import`` statements reading ``from PACKAGE.x import``.

    Only the module names of import statements change (same lines, same columns of
    everything else); any other mention of ``tests`` is left alone.
    """
    lines = source.splitlines(keepends=True)
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name == "tests" or name.startswith("tests."):
                line = lines[node.lineno - 1]
                if line.count(name) != 1:
                    raise RuntimeError(f"{filename}:{node.lineno}: cannot rewrite the import of {name}")
                lines[node.lineno - 1] = line.replace(name, PACKAGE + name[len("tests") :])
    return "".join(lines)


class _RetargetingLoader(importlib.machinery.SourceFileLoader):
    """Python's loader for a source file, compiling it with :func:`_retarget_imports` applied.

    Always from the source, never from (or into) ``__pycache__``: a cached bytecode file
    would hold the imports as rewritten for another :data:`PACKAGE`.
    """

    def get_code(self, fullname):  # type: ignore[no-untyped-def]
        path = self.get_filename(fullname)
        source = importlib.util.decode_source(self.get_data(path))
        return compile(_retarget_imports(source, path), path, "exec", dont_inherit=True)


def load(version: str | None = None) -> types.ModuleType:
    """allauth's ``base`` test module (``OAuth2TestsMixin``), as :data:`PACKAGE` ``.base``.

    Its ``MockedResponse`` and ``mocked_response`` come from :data:`PACKAGE` ``.mocking``.
    """
    if f"{PACKAGE}.base" in sys.modules:
        return sys.modules[f"{PACKAGE}.base"]
    folder = ensure_files(version or allauth_version())
    package = types.ModuleType(PACKAGE, "allauth's provider test suite (tests/allauth_suite.py)")
    package.__path__ = [str(folder)]
    sys.modules[PACKAGE] = package
    for name in FILES:
        qualified = f"{PACKAGE}.{name}"
        path = str(folder / f"{name}.py")
        spec = importlib.util.spec_from_file_location(qualified, path, loader=_RetargetingLoader(qualified, path))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
        setattr(package, name, module)
    return sys.modules[f"{PACKAGE}.base"]
