# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every device script parses as PowerShell, uses nothing Windows PowerShell 5.1 lacks, and matches its contract."""

from __future__ import annotations

import glob
import os
import re

import jsonschema
import pytest
import tree_sitter
import tree_sitter_powershell

from ansible_collections.remote_support.windows.plugins.module_utils import device_script

SCRIPTS = sorted(glob.glob(os.path.join(device_script.SCRIPTS_DIR, "*.ps1")))
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))

# Syntax that PowerShell 7 added and Windows PowerShell 5.1 cannot parse or run.
PS7_ONLY = [
    (re.compile(r"\?\?=?"), "null-coalescing operator ??"),
    (re.compile(r"\s&&\s|\s\|\|\s"), "pipeline chain operator && / ||"),
    (re.compile(r"\?\."), "null-conditional member access ?."),
    (re.compile(r"\$\w+\s*\?\s*[^:\s]+\s*:"), "ternary operator ? :"),
    (re.compile(r"ForEach-Object\s+-Parallel", re.IGNORECASE), "ForEach-Object -Parallel"),
    (re.compile(r"\bclean\s*\{"), "clean block"),
]


def test_there_are_device_scripts():
    assert len(SCRIPTS) >= 2


def _code_lines(text):
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


@pytest.mark.parametrize("path", SCRIPTS, ids=os.path.basename)
def test_script_parses_as_powershell(path):
    with open(path, "rb") as handle:
        tree = PARSER.parse(handle.read())
    errors = [node for node in _walk(tree.root_node) if node.type == "ERROR" or node.is_missing]
    assert not errors, f"{path}: parse errors at {[e.start_point for e in errors]}"


@pytest.mark.parametrize("path", SCRIPTS, ids=os.path.basename)
def test_script_uses_only_windows_powershell_5_1_syntax(path):
    with open(path, encoding="utf-8") as handle:
        code = _code_lines(handle.read())
    found = [what for pattern, what in PS7_ONLY if pattern.search(code)]
    assert not found, f"{path} uses PowerShell 7-only syntax: {found}"


def test_the_checker_catches_powershell_7_syntax():
    samples = ["$a = $b ?? 'x'", "git pull && git push", "$x?.Name", "$v = $c ? 1 : 2",
               "1..3 | ForEach-Object -Parallel { $_ }"]
    for sample in samples:
        assert any(pattern.search(sample) for pattern, _what in PS7_ONLY), sample


@pytest.mark.parametrize("path", [p for p in SCRIPTS if not p.endswith("bootstrap.ps1")], ids=os.path.basename)
def test_script_has_a_valid_contract(path):
    name = os.path.basename(path)[:-len(".ps1")]
    script = device_script.load(name)
    for part in ("input", "output"):
        jsonschema.Draft202012Validator.check_schema(script.contract[part])
    assert script.contract["output"].get("additionalProperties") is False
    # Every output field the contract requires is produced by the script text.
    for field in script.contract["output"]["required"]:
        assert re.search(rf"\b{field}\b", script.text), f"{name}.ps1 never writes {field}"


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def test_the_parse_check_reports_broken_powershell():
    tree = PARSER.parse(b"if ($a -eq 1 {\n    Write-Output 'x'\n")
    assert any(node.type == "ERROR" or node.is_missing for node in _walk(tree.root_node))
