"""The README, LICENSE and pyproject.toml agree: every runtime dependency is explained, the
documented default access-log fields are the real ones, and the licence is what it says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from fastgw.config.schema import DEFAULT_ACCESS_LOG_FIELDS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return normalise(match.group())


def readme_dependency_table() -> dict[str, str]:
    """The README's "runtime dependency | what it does" table: {normalised name: what it does}."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| runtime dependency |"))
    rows: dict[str, str] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        name, does = (cell.strip() for cell in line.strip("|").split("|", 1))
        # "redis (with hiredis)", "PyJWT (with cryptography)": the distribution comes first
        rows[normalise(name.split()[0])] = does.strip(" |")
    return rows


def test_every_runtime_dependency_is_in_the_readme_table() -> None:
    table = readme_dependency_table()
    required = [requirement_name(r) for r in PYPROJECT["project"]["dependencies"]]
    assert len(required) >= 11  # the parser found the list
    missing = [name for name in required if name not in table]
    assert not missing, f"pyproject dependencies not explained in README.md: {missing}"
    # and the table lists nothing that is not a dependency
    assert sorted(table) == sorted(required)
    assert all(table[name] for name in required)


def test_readme_default_access_log_fields_are_the_real_default() -> None:
    block = re.search(r"access_log:.*?\n  fields: \[(.*?)\]\s+# the default", README, re.S)
    assert block, "the README's access_log example with its default fields"
    documented = tuple(field.strip() for field in block.group(1).split(","))
    assert documented == DEFAULT_ACCESS_LOG_FIELDS


def test_license_is_apache_2_and_pyproject_says_so() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "http://www.apache.org/licenses/" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "Licensed under Apache-2.0" in README
