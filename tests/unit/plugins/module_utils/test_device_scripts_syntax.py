# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every device script, as the device receives it (its libraries in place), parses as PowerShell, uses nothing Windows
PowerShell 5.1 lacks, and matches its contract; every library is one piece of code, defined once."""

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
LIBRARIES = sorted(glob.glob(os.path.join(device_script.LIBRARY_DIR, "*.ps1")))
BOOTSTRAPS = ("bootstrap", "stream_bootstrap")
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


def test_there_are_device_scripts_and_libraries():
    assert len(SCRIPTS) >= 2
    assert len(LIBRARIES) >= 1


def _name(path):
    return os.path.basename(path)[:-len(".ps1")]


def _sent_text(path):
    """What the device runs: a script with its libraries in place, a bootstrap or a library as it is."""
    if os.path.dirname(path) == device_script.SCRIPTS_DIR and _name(path) not in BOOTSTRAPS:
        return device_script.load(_name(path)).text
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _code_lines(text):
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


@pytest.mark.parametrize("path", SCRIPTS + LIBRARIES, ids=os.path.basename)
def test_script_parses_as_powershell(path):
    tree = PARSER.parse(_sent_text(path).encode("utf-8"))
    errors = [node for node in _walk(tree.root_node) if node.type == "ERROR" or node.is_missing]
    assert not errors, f"{path}: parse errors at {[e.start_point for e in errors]}"


@pytest.mark.parametrize("path", SCRIPTS + LIBRARIES, ids=os.path.basename)
def test_script_uses_only_windows_powershell_5_1_syntax(path):
    code = _code_lines(_sent_text(path))
    found = [what for pattern, what in PS7_ONLY if pattern.search(code)]
    assert not found, f"{path} uses PowerShell 7-only syntax: {found}"


FUNCTION = re.compile(r"^function +([A-Za-z][\w-]*)", re.MULTILINE | re.IGNORECASE)


@pytest.mark.parametrize("path", [p for p in SCRIPTS if _name(p) not in BOOTSTRAPS], ids=os.path.basename)
def test_a_script_defines_each_function_once_and_takes_every_library_it_names(path):
    # A function a script writes again beside a library's copy would silently win over it (the later one does).
    text = device_script.load(_name(path)).text
    names = [name.lower() for name in FUNCTION.findall(text)]
    assert sorted(set(names)) == sorted(names), f"{path} defines {[n for n in set(names) if names.count(n) > 1]} twice"
    assert "# library:" not in text


def _own_functions():
    names = set()
    for path in SCRIPTS + LIBRARIES:
        with open(path, encoding="utf-8") as handle:
            names.update(FUNCTION.findall(handle.read()))
    return names


@pytest.mark.parametrize("path", [p for p in SCRIPTS if _name(p) not in BOOTSTRAPS], ids=os.path.basename)
def test_a_script_defines_every_function_of_ours_it_calls(path):
    # A library a script forgot to take shows as a call to a function it does not have.
    text = device_script.load(_name(path)).text
    code = _code_lines(text)
    defined = {name.lower() for name in FUNCTION.findall(text)}
    called = {name for name in _own_functions() if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", code)}
    assert not {name for name in called if name.lower() not in defined}, f"{path} calls functions it does not define"


@pytest.mark.parametrize("path", LIBRARIES, ids=os.path.basename)
def test_every_library_is_taken_by_a_script_and_holds_code(path):
    text = device_script.library(_name(path))
    assert FUNCTION.search(text) or re.search(r"^\$\w+ *=", text, re.MULTILINE), f"{path} holds no code"
    takers = [_name(p) for p in SCRIPTS if _name(p) not in BOOTSTRAPS and text in device_script.load(_name(p)).text]
    assert takers, f"no device script takes the library {_name(path)}"


def test_a_library_goes_in_where_the_script_names_it(monkeypatch, tmp_path):
    (tmp_path / "lock.ps1").write_text("# device-script-library: lock\nfunction Enter-Lock {\n}\n", encoding="utf-8")
    monkeypatch.setattr(device_script, "LIBRARY_DIR", str(tmp_path))
    device_script.library.cache_clear()
    try:
        text = "# device-script: demo\n# version: 1\nparam($InputObject)\n# library: lock\n\nEnter-Lock\n"
        assert device_script.with_libraries("demo", text) == (
            "# device-script: demo\n# version: 1\nparam($InputObject)\n# device-script-library: lock\n"
            "function Enter-Lock {\n}\n\nEnter-Lock\n")
        with pytest.raises(ValueError, match="takes the library lock twice"):
            device_script.with_libraries("demo", text + "# library: lock\n")
        (tmp_path / "nested.ps1").write_text("# device-script-library: nested\n# library: lock\n", encoding="utf-8")
        with pytest.raises(ValueError, match="takes a library"):
            device_script.with_libraries("demo", "# library: nested\n")
        (tmp_path / "misnamed.ps1").write_text("# device-script-library: other\n", encoding="utf-8")
        with pytest.raises(ValueError, match="does not start with"):
            device_script.with_libraries("demo", "# library: misnamed\n")
        with pytest.raises(ValueError, match="not a device-script library name"):
            device_script.with_libraries("demo", "# library: ../lock\n")
    finally:
        device_script.library.cache_clear()


def test_the_checker_catches_powershell_7_syntax():
    samples = ["$a = $b ?? 'x'", "git pull && git push", "$x?.Name", "$v = $c ? 1 : 2",
               "1..3 | ForEach-Object -Parallel { $_ }"]
    for sample in samples:
        assert any(pattern.search(sample) for pattern, _what in PS7_ONLY), sample


@pytest.mark.parametrize("path", [p for p in SCRIPTS if _name(p) not in BOOTSTRAPS], ids=os.path.basename)
def test_script_has_a_valid_contract(path):
    name = _name(path)
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
