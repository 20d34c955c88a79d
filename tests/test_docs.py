"""Documentation stays true: every parameter in the template and man page, man pages clean."""

from __future__ import annotations

import configparser
import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from b2bua.config import load_config, schema

REPO = Path(__file__).resolve().parents[1]


def declared() -> set[tuple[str, str]]:
    return {(entry.section, entry.key) for entry in schema()}


def man_parameters() -> set[tuple[str, str]]:
    """(section, key) for each `.TP` + `.B key` under a `.SH "[section]"` heading."""
    found = set()
    section = None
    lines = (REPO / "man/b2bua.conf.5").read_text().splitlines()
    for previous, line in itertools.pairwise(lines):
        heading = re.fullmatch(r'\.S[HS] "\[([a-z_]+(?::NAME)?)\]"', line)
        if heading:
            section = heading.group(1)
        elif line.startswith(".SH"):
            section = None
        elif section and previous == ".TP" and line.startswith(".B "):
            found.add((section, line[3:].strip()))
    return found


def template_parameters() -> set[tuple[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    parser.read(REPO / "conf/b2bua.conf")
    return {
        (re.sub(r":.*", ":NAME", section), key)
        for section in parser.sections()
        for key in parser[section]
    }


def test_man_page_documents_exactly_the_declared_parameters() -> None:
    """b2bua.conf(5) has an entry for every parameter the validator knows, and no other."""
    assert man_parameters() == declared()


def test_template_lists_exactly_the_declared_parameters() -> None:
    """conf/b2bua.conf sets every parameter the validator knows, and no other."""
    assert template_parameters() == declared()


def test_template_holds_the_defaults() -> None:
    """conf/b2bua.conf shows each parameter at its default value."""
    config = load_config(str(REPO / "conf/b2bua.conf"))
    for entry in schema():
        if entry.required or entry.section.endswith(":NAME"):
            continue  # examples of named sections show values, not defaults
        assert getattr(getattr(config, entry.section), entry.key) == entry.default, entry


def test_template_annotates_every_parameter() -> None:
    """Each parameter line of the template is preceded by a comment saying why."""
    lines = (REPO / "conf/b2bua.conf").read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[a-z_0-9]+ =", line):
            above = lines[index - 1]
            assert above.startswith(";") or re.match(r"^[a-z_0-9]+ =", above), line


@pytest.mark.parametrize("page", ["man/b2bua.8", "man/b2bua.conf.5"])
def test_man_pages_render_without_warnings(page: str) -> None:
    """groff renders each man page with every warning enabled and prints nothing."""
    groff = shutil.which("groff")
    assert groff, "groff is installed by scripts/install-system-deps"
    result = subprocess.run(
        [groff, "-man", "-ww", "-z", str(REPO / page)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls the README's test command verbatim."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"## Run the tests\n+```sh\n(.+?)\n```", readme)
    assert match, "README has a 'Run the tests' section with one command"
    command = match.group(1).strip()
    ci = (REPO / ".ci/run").read_text().splitlines()
    assert command in [line.strip() for line in ci]


def test_readme_run_command_starts_the_lab_config() -> None:
    """The README's run command is `make run`, and the Makefile runs conf/lab.conf."""
    readme = (REPO / "README.md").read_text()
    assert re.search(r"## Install and run\n+```sh\nmake run\n```", readme)
    assert "b2bua --config conf/lab.conf" in (REPO / "Makefile").read_text()
