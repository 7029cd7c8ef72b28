# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shipped playbooks, their argument specs and docs/playbooks.md agree: every playbook checks its variables
first, against the spec beside it, and the doc's table for it lists exactly those variables, as the spec has them."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
PLAYBOOKS = sorted(path.stem for path in (ROOT / "playbooks").glob("*.yml"))
DOC = (ROOT / "docs" / "playbooks.md").read_text(encoding="utf-8")


def spec_of(name: str) -> dict:
    return yaml.safe_load((ROOT / "playbooks" / "vars" / f"{name}_argument_spec.yml").read_text(encoding="utf-8"))


def doc_rows(name: str) -> dict[str, list[str]]:
    """The variable table under '### `name`' in docs/playbooks.md: variable -> its other cells."""
    section = DOC.split(f"### `{name}`\n", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = [cell.replace("\\|", "|") for cell in cells[1:]]
    return rows


def expected_row(option: dict, bounds: list | None) -> list[str]:
    default = option.get("default")
    if option.get("required"):
        shown_default = "required"
    elif "default" not in option:
        shown_default = ""
    else:
        shown_default = f"`{str(default).lower() if isinstance(default, bool) else default}`"
    allowed = ", ".join(map(str, option.get("choices", [])))
    if bounds:
        allowed = f"{bounds[0]} to {bounds[1]}" if bounds[1] is not None else f"at least {bounds[0]}"
    return [option["type"], shown_default, allowed, " ".join(option["description"].split())]


def test_every_playbook_is_covered():
    assert PLAYBOOKS == ["audit_report", "device_info", "end_sessions", "enforce_policy", "mass_support",
                         "reauthorize_expiring", "support_session"]


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_first_task_checks_the_variables(name):
    play = yaml.safe_load((ROOT / "playbooks" / f"{name}.yml").read_text(encoding="utf-8"))[0]
    first = play["tasks"][0]
    assert first["ansible.builtin.import_tasks"] == "tasks/check_arguments.yml"
    assert first["vars"] == {"arguments_of": name}


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_spec_is_well_formed(name):
    spec = spec_of(name)
    assert set(spec) == {"options", "ranges"}
    for option_name, option in spec["options"].items():
        assert option["type"] in {"str", "int", "bool", "path", "list", "dict"}, option_name
        assert option["description"].strip(), option_name
    for option_name, bounds in spec["ranges"].items():
        assert spec["options"][option_name]["type"] == "int", option_name
        assert len(bounds) == 2 and (bounds[1] is None or bounds[0] <= bounds[1]), option_name


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_doc_table_matches_spec(name):
    spec = spec_of(name)
    expected = {key: expected_row(option, spec["ranges"].get(key)) for key, option in spec["options"].items()}
    assert doc_rows(name) == expected


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_doc_has_an_example_command(name):
    section = DOC.split(f"### `{name}`\n", 1)[1].split("\n#", 1)[0]
    assert f"ansible-playbook -i inventory.yml remote_support.windows.{name}" in section


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_playbook_defaults_match_spec(name):
    """A default the playbook applies (`var | default(X)`) is the one the spec and the doc give."""
    text = (ROOT / "playbooks" / f"{name}.yml").read_text(encoding="utf-8")
    for key, option in spec_of(name)["options"].items():
        for used in re.findall(rf"\b{key} \| default\(([^()]*)\)", text):
            if "default" in option and used not in ("omit", ""):
                assert yaml.safe_load(used) == option["default"], (key, used)


def test_header_comments_point_to_the_doc():
    for name in PLAYBOOKS:
        header = (ROOT / "playbooks" / f"{name}.yml").read_text(encoding="utf-8").split("\n- name:", 1)[0]
        assert "docs/playbooks.md" in header, name
