"""The documentation: the mkdocs site builds with --strict, and README.md stays a short product page
whose set-up section names exactly the Makefile's two entry points."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETUP_COMMANDS = ["make demo", "make test"]


def _section(text: str, heading: str) -> str:
    """The body of the `## heading` section of a markdown text (up to the next `## `)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def _commands(section: str) -> list[str]:
    """Shell commands of a section's indented or fenced code lines, comments stripped."""
    lines, fenced = [], False
    for line in section.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            command = line.split("#", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (pip install -e '.[docs]'; the test extra has it)",
)
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about a future mkdocs
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the API pages are generated from the docstrings, not left empty
    api = (site / "api" / "models" / "index.html").read_text()
    assert "load_model" in api and "Build a model and load its weights" in api


def test_readme_is_a_short_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_has_exactly_the_two_setup_commands():
    text = README.read_text()
    assert _commands(_section(text, "Set up on a fresh machine")) == SETUP_COMMANDS
    # no other make target anywhere in the README's code (code lines and `inline code`)
    code = "\n".join(_commands(text) + re.findall(r"`([^`\n]+)`", text))
    make_calls = re.findall(r"(?<![\w.-])make [\w-]+", code)
    assert sorted(set(make_calls)) == sorted(SETUP_COMMANDS), make_calls
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
    assert {"demo", "test"} <= set(targets)


def test_readme_links_resolve():
    text = README.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local, "README.md links to no page"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
