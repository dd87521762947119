"""The README stays short and true: every setting in its table, every link pointing at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import SECRET_FILES, Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def table_rows() -> dict[str, str]:
    """Each configuration-table variable → its row."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for row in section.splitlines():
        if row.startswith("| `"):
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]):
                rows[name] = row
    return rows


def test_the_readme_fits_on_a_screen_or_two() -> None:
    assert len(README.splitlines()) < 200


def test_the_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = table_rows()
    files = set(SECRET_FILES.values())
    settings = {env_name(name) for name in Settings.model_fields if name not in files}
    assert settings | {"PORT"} <= set(rows), sorted(settings - set(rows))
    for name, row in rows.items():
        assert len(row.split("|")) == 5 and row.split("|")[2].strip(), f"{name} has no default column"
    for secret in SECRET_FILES:  # each may come from NAME_FILE: the table marks it
        assert "🔒" in rows[env_name(secret)], env_name(secret)


def test_every_relative_link_in_the_readme_and_docs_points_at_a_file() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_two_commands_are_the_ones_ci_and_users_run() -> None:
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/ecsbot demo\n" in README
    assert "\nbash scripts/test.sh\n" in README and "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
