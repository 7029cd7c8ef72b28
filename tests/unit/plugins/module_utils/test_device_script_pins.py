# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every contract pins the text of its script as the device receives it, so a script cannot change unseen: the lab
emulates each script from its contract, and a change the contract does not follow would pass every lab test."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import device_script

NAMES = device_script.script_names()
PIN_COMMAND = "scripts/pin-device-scripts"


def _contract(name):
    with open(os.path.join(device_script.SCRIPTS_DIR, f"{name}.contract.json"), encoding="utf-8") as handle:
        return json.load(handle)


def test_there_are_contracts_to_check():
    assert len(NAMES) >= 10


@pytest.mark.parametrize("name", NAMES)
def test_the_contract_pins_the_script_the_device_receives(name):
    pinned = _contract(name).get("script_sha256")
    actual = device_script.script_sha256(name)
    assert pinned == actual, (
        f"{name}.ps1 as the device receives it (its libraries and the device layout in place) has SHA-256 {actual}, "
        f"but {name}.contract.json pins {pinned}. The script changed without its contract. Look at what the change "
        f"does to the script's input, output and effects: update {name}.contract.json (and raise its version, with "
        f"the script's '# version:' line, when input or output changed) and the lab's emulation "
        f"lab/src/winrm_lab/emulation/scripts/{name}.py (its VERSION), then pin the new text with `{PIN_COMMAND} "
        f"{name}`.")


def test_the_pin_follows_the_text_the_device_receives(monkeypatch):
    """A change anywhere in what the device runs, a library included, moves the pin."""
    name = "get_support_policy"
    before = device_script.script_sha256(name)
    original = device_script.load(name)
    monkeypatch.setattr(device_script, "load", lambda wanted: original.__class__(
        name=original.name, version=original.version, text=original.text.replace("Read-KeyValues", "Read-KeyValue"),
        contract=original.contract))
    assert device_script.script_sha256(name) != before


def test_writing_the_pins_puts_the_pin_after_the_version(tmp_path, monkeypatch):
    name = "get_support_policy"
    contract = _contract(name)
    contract.pop("script_sha256")
    (tmp_path / f"{name}.contract.json").write_text(json.dumps(contract, indent=2) + "\n", encoding="utf-8")
    monkeypatch.setattr(device_script, "SCRIPTS_DIR", str(tmp_path))
    monkeypatch.setattr(device_script, "script_sha256", lambda wanted: "ab" * 32)

    assert device_script.write_pins([name]) == [name]
    pinned = (tmp_path / f"{name}.contract.json").read_text(encoding="utf-8")
    assert json.loads(pinned) == dict(contract, script_sha256="ab" * 32)
    assert pinned.index('"script_sha256"') > pinned.index('"version"')
    assert device_script.write_pins([name]) == [], "a pin that holds is left as it is"

    monkeypatch.setattr(device_script, "script_sha256", lambda wanted: "cd" * 32)
    assert device_script.write_pins([name]) == [name]
    assert json.loads((tmp_path / f"{name}.contract.json").read_text(encoding="utf-8"))["script_sha256"] == "cd" * 32
