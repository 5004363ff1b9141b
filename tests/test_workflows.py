"""The GitHub workflows are valid and pass zizmor's audit, and the CI matrix is tox.ini's.

``check-jsonschema`` (with the schemas it ships: no network) and ``zizmor --offline`` come
with the ``lint`` extra, which ``tests/run.py`` installs. In the SQLite pass only: the
checks are about files, not the database. Skipped where the lint extra is not installed
(a tox cell, which installs ``test`` only), except under ``tests/run.py``'s environment.
"""

from __future__ import annotations

import configparser
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))

pytestmark = pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs in the SQLite pass only")


def tool(name: str) -> str:
    """The tool's executable beside this interpreter (the virtualenv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[lint]')")
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_there_are_the_ci_and_release_workflows():
    assert {path.name for path in WORKFLOWS} == {"ci.yml", "release.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_workflow_matches_githubs_schema(workflow: Path):
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dependabot_config_matches_its_schema():
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(GITHUB / "dependabot.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing_in_the_workflows():
    done = run(tool("zizmor"), "--offline", "--no-progress", ".github/workflows")
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_fails_on_an_unpinned_action(tmp_path: Path):
    # The audit above is only worth something if zizmor reads these files and can fail:
    # the release workflow with its publishing action on a branch instead of a commit.
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    text = (GITHUB / "workflows" / "release.yml").read_text()
    unpinned = re.sub(r"pypa/gh-action-pypi-publish@[0-9a-f]{40}", "pypa/gh-action-pypi-publish@release/v1", text)
    assert unpinned != text
    (workflows / "release.yml").write_text(unpinned)
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", str(workflows)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "unpinned-uses" in done.stdout + done.stderr


def test_every_action_is_pinned_by_commit_with_its_version():
    for workflow in WORKFLOWS:
        for line in workflow.read_text().splitlines():
            if "uses:" in line:
                assert re.search(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$", line), (workflow.name, line)


def expand(pattern: str) -> list[str]:
    """tox's brace expansion: ``py312-django{52,60}`` -> ``py312-django52``, ``py312-django60``."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [[part] if index % 2 == 0 else part.split(",") for index, part in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def test_ci_matrix_is_every_tox_cell():
    config = configparser.ConfigParser()
    config.read(ROOT / "tox.ini")
    cells = {env for line in config["tox"]["envlist"].split() for env in expand(line.strip())}
    ci = (GITHUB / "workflows" / "ci.yml").read_text()
    pairs = re.findall(r'\{ python: "(3\.\d+)", toxenv: (py\d+-[a-z0-9]+) \}', ci)
    assert {toxenv for _python, toxenv in pairs} == cells
    assert len(pairs) == len(cells)  # each cell once
    for python, toxenv in pairs:  # on its own Python
        assert toxenv.startswith("py" + python.replace(".", "") + "-"), (python, toxenv)
