# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""support_policy's core against an in-memory device whose registry answers the policy scripts as their contracts
say, and the rules every reader of the policy shares."""

from __future__ import annotations

import re

import pytest
from winrm_lab.emulation import support_policy as lab_policy

from ansible_collections.remote_support.windows.plugins.module_utils import device_script
from ansible_collections.remote_support.windows.plugins.module_utils import support_policy as sp


def _script_text(name):
    return device_script.load(name).text


def policy_device(lab, values=None, shadow=None):
    """A lab device whose policy key holds `values` (name -> value, kept as the registry keeps it: text is REG_SZ, a
    number REG_DWORD) and whose RDP shadow rule is `shadow` (None: no value)."""
    device = lab()
    for name, value in (values or {}).items():
        device.device.registry.set(lab_policy.POLICY_KEY, name, value)
    if shadow is not None:
        device.device.registry.set(lab_policy.SHADOW_KEY, "Shadow", shadow)
    return device


def stored(device):
    """The policy key and the shadow rule as the device keeps them (what get_support_policy.ps1 reports)."""
    return lab_policy.read(device.device)


def writes(device):
    return [call for call in device.calls if call[0] == "set_support_policy"]


ALL = {"confirmation_required": True, "confirmation_timeout": 300, "session_ttl": 3600,
       "remote_control_mode": "control", "file_transfer_allowed_roots": ["C:\\Users"],
       "file_transfer_max_size": 4 * 1024 ** 3}


def run(device, check_mode=False, diff=True, **options):
    base = {"state": "present", "manage_shadow_policy": True, "changed_by": "jdoe"}
    base.update(options)
    return sp.run(device, base, check_mode=check_mode, diff=diff)


# --- the bounds -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,value", [
    ("session_ttl", 0), ("session_ttl", -60), ("session_ttl", 28801), ("session_ttl", 59),
    ("confirmation_timeout", 0), ("confirmation_timeout", 9), ("confirmation_timeout", 3601),
    ("file_transfer_max_size", 0), ("file_transfer_max_size", 1024 ** 4 + 1), ("session_ttl", True),
])
def test_numbers_outside_their_bounds_are_refused_before_the_device_is_read(lab, name, value):
    device = policy_device(lab)
    result = run(device, **{name: value})
    assert result["failed"] is True and name in result["msg"] and "must be" in result["msg"]
    assert device.calls == []


@pytest.mark.parametrize("name,value", [("session_ttl", 60), ("session_ttl", 28800), ("confirmation_timeout", 10),
                                        ("confirmation_timeout", 3600), ("file_transfer_max_size", 1)])
def test_the_bounds_themselves_are_allowed(name, value):
    assert sp.validate_options({name: value}) == {name: value}


def test_an_unknown_mode_is_refused():
    with pytest.raises(sp.PolicyError, match="remote_control_mode must be one of control, view, none"):
        sp.validate_options({"remote_control_mode": "steer"})


@pytest.mark.parametrize("given,stored", [
    ("C:\\Users", "C:\\Users"),
    ("c:/Users/Public/", "C:\\Users\\Public"),
    ("D:\\", "D:\\"),
    ("d:", None),
    ("\\\\fileserver\\support\\in", "\\\\fileserver\\support\\in"),
    ("//fileserver/support", "\\\\fileserver\\support"),
    ("", None), ("   ", None), ("Users\\x", None), ("C:relative", None), ("\\Windows", None),
    ("C:\\a\\..\\b", None), ("C:\\a\\.", None), ("C:\\a\\b:stream", None), ("C:\\a|b", None),
    ("\\\\server", None), ("C:\\" + "x" * 300, None),
])
def test_allowed_roots_are_absolute_windows_folders(given, stored):
    if stored is None:
        with pytest.raises(sp.PolicyError):
            sp.normalize_root(given)
    else:
        assert sp.normalize_root(given) == stored


def test_duplicate_roots_count_once_as_windows_compares_paths():
    assert sp.normalize_roots(["C:\\Users", "c:\\users\\", "D:\\x"]) == ["C:\\Users", "D:\\x"]
    with pytest.raises(sp.PolicyError, match="at most 32"):
        sp.normalize_roots([f"C:\\r{i}" for i in range(33)])


def test_an_empty_list_of_roots_is_allowed_and_turns_transfers_off(lab):
    device = policy_device(lab)
    result = run(device, file_transfer_allowed_roots=[])
    assert result["policy"]["file_transfer_allowed_roots"] == []
    assert stored(device)["values"]["FileTransferAllowedRoots"] == {"kind": "MultiString", "data": []}


# --- what readers see -------------------------------------------------------------------------------------------------
def test_a_device_without_a_policy_reads_as_the_defaults():
    policy = sp.effective_policy({"policy_key_exists": False, "values": {}, "shadow": None})
    assert policy == {
        "confirmation_required": True, "confirmation_timeout_seconds": 300, "session_ttl_seconds": 3600,
        "remote_control_mode": "control", "remote_control_allowed": ["control", "view"],
        "file_transfer_allowed_roots": ["C:\\Users"], "file_transfer_max_size_bytes": 4294967296,
        "source": "default", "changed_by": None, "changed_at": None,
    }


def test_unusable_values_read_as_the_defaults_as_get_support_session_reads_them():
    values = {
        "ConfirmationRequired": {"kind": "String", "data": "no"},
        "ConfirmationTimeoutSeconds": {"kind": "DWord", "data": 0},
        "SessionTtlSeconds": {"kind": "String", "data": "1800"},  # a number in text counts, as [int]::TryParse
        "RemoteControlMode": {"kind": "String", "data": "Steer"},
        "FileTransferAllowedRoots": {"kind": "MultiString", "data": ["relative", "D:\\Support"]},
        "FileTransferMaxSizeBytes": {"kind": "MultiString", "data": ["5"]},
    }
    policy = sp.effective_policy({"policy_key_exists": True, "values": values, "shadow": None})
    assert policy["confirmation_required"] is True
    assert policy["confirmation_timeout_seconds"] == 300
    assert policy["session_ttl_seconds"] == 1800
    assert policy["remote_control_mode"] == "control"
    assert policy["file_transfer_allowed_roots"] == ["D:\\Support"]
    assert policy["file_transfer_max_size_bytes"] == 4294967296
    assert policy["source"] == "device"


@pytest.mark.parametrize("mode,required,value", [("control", True, 1), ("control", False, 2), ("view", True, 3),
                                                 ("view", False, 4), ("none", True, 0), ("none", False, 0)])
def test_the_shadow_rule_follows_mode_and_confirmation(lab, mode, required, value):
    device = policy_device(lab)
    result = run(device, confirmation_required=required, remote_control_mode=mode)
    assert stored(device)["shadow"] == {"kind": "DWord", "data": value}
    assert result["shadow_policy"]["value"] == value
    assert result["shadow_policy"]["meaning"] == sp.SHADOW_MEANINGS[value]
    assert result["policy"]["remote_control_allowed"] == list(sp.REMOTE_CONTROL_ALLOWED[mode])


def test_an_absent_shadow_value_is_what_windows_does_without_one():
    state = sp.shadow_state({"shadow": None})
    assert state == {"value": None, "effective": 1, "meaning": "full control with the user's permission"}


# --- changed, check mode, diff ------------------------------------------------------------------------------------------
def test_first_run_writes_everything_then_a_second_changes_nothing(lab):
    device = policy_device(lab)
    first = run(device, **ALL)
    assert first["changed"] is True
    assert first["changes"] == ["confirmation_required", "confirmation_timeout_seconds", "session_ttl_seconds",
                                "remote_control_mode", "file_transfer_allowed_roots",
                                "file_transfer_max_size_bytes", "shadow"]
    assert stored(device)["values"]["FileTransferMaxSizeBytes"] == {"kind": "QWord", "data": 4294967296}
    assert stored(device)["values"]["ChangedBy"]["data"] == "jdoe"
    second = run(device, **ALL)
    assert second["changed"] is False and second["changes"] == []
    assert len(writes(device)) == 1


def test_only_what_differs_is_written_and_audited(lab):
    device = policy_device(lab)
    run(device, **ALL)
    result = run(device, **{**ALL, "confirmation_required": False})
    assert result["changes"] == ["confirmation_required", "shadow"]
    request = writes(device)[-1][1]
    assert request["values"] == [{"name": "ConfirmationRequired", "kind": "DWord", "data": 0}]
    assert request["shadow"] == {"kind": "DWord", "data": 2}
    assert request["audit"]["event_id"] == sp.POLICY_CHANGED_EVENT_ID
    assert "confirmation_required True -> False" in request["audit"]["message"]
    assert "shadow 1 -> 2" in request["audit"]["message"]
    assert result["diff"]["before"]["confirmation_required"] is True
    assert result["diff"]["after"]["confirmation_required"] is False
    assert result["diff"]["after"]["shadow"] == 2


def test_check_mode_reports_what_would_change_and_writes_nothing(lab):
    device = policy_device(lab)
    run(device, **ALL)
    result = run(device, check_mode=True, **{**ALL, "session_ttl": 1800, "remote_control_mode": "view"})
    assert result["changed"] is True
    assert result["changes"] == ["session_ttl_seconds", "remote_control_mode", "shadow"]
    assert result["msg"].startswith("Would change")
    assert result["policy"]["session_ttl_seconds"] == 3600  # still as it is
    assert result["diff"]["before"]["session_ttl_seconds"] == 3600
    assert result["diff"]["after"]["session_ttl_seconds"] == 1800
    assert result["diff"]["after"]["shadow"] == 3
    assert len(writes(device)) == 1


def test_options_not_given_are_left_alone(lab):
    device = policy_device(lab, values={"SessionTtlSeconds": 7200})
    result = run(device, confirmation_timeout=60)
    assert [entry["name"] for entry in writes(device)[0][1]["values"]] == ["ConfirmationTimeoutSeconds"]
    assert result["policy"]["session_ttl_seconds"] == 7200


def test_a_value_of_the_wrong_kind_is_rewritten_even_when_it_reads_the_same(lab):
    device = policy_device(lab, values={"SessionTtlSeconds": "3600"}, shadow=1)
    result = run(device, session_ttl=3600)
    assert result["changed"] is True and result["changes"] == ["session_ttl_seconds"]
    assert stored(device)["values"]["SessionTtlSeconds"] == {"kind": "DWord", "data": 3600}


def test_a_number_in_either_number_kind_is_the_same_number(lab):
    # The module writes FileTransferMaxSizeBytes as a REG_QWORD; a REG_DWORD of the same number is the same number.
    device = policy_device(lab, values={"FileTransferMaxSizeBytes": 1000, "ConfirmationTimeoutSeconds": 60},
                           shadow=1)
    assert stored(device)["values"]["FileTransferMaxSizeBytes"]["kind"] == "DWord"
    result = run(device, file_transfer_max_size=1000, confirmation_timeout=60)
    assert result["changed"] is False


def test_the_shadow_rule_is_left_alone_when_not_managed(lab):
    device = policy_device(lab, shadow=4)
    result = run(device, manage_shadow_policy=False, confirmation_required=True)
    assert stored(device)["shadow"] == {"kind": "DWord", "data": 4}
    assert result["changes"] == ["confirmation_required"]
    assert result["shadow_policy"]["managed"] is False and result["shadow_policy"]["value"] == 4


def test_query_reads_and_never_writes(lab):
    device = policy_device(lab, values={"ConfirmationRequired": 0})
    result = run(device, state="query", session_ttl=0)  # options are not checked or applied when only reading
    assert result["changed"] is False and writes(device) == []
    assert result["policy"]["confirmation_required"] is False


def test_an_unreachable_device_fails_with_the_reason(lab):
    device = policy_device(lab)
    device.device.faults.refuse_connections = True
    result = run(device, **ALL)
    assert result["failed"] is True and result["msg"].startswith("Unable to connect to the device: ")
    assert "refused the connection. Check that the device is on" in result["msg"]
    assert result["connection"]["reason"] == "refused" and result["device_status"] == "unreachable"


def test_a_script_failure_says_what_the_device_said(lab):
    device = policy_device(lab)
    device.device.denied_paths.add(lab_policy.POLICY_KEY.lower())  # the key's ACL denies the WinRM account
    result = run(device, **ALL)
    assert result["failed"] is True and "Requested registry access is not allowed" in result["msg"]
    assert stored(device)["policy_key_exists"] is False  # nothing was written


# --- one set of names ---------------------------------------------------------------------------------------------------
def test_the_session_reads_the_same_value_names_and_defaults():
    text = _script_text("get_support_session")
    for name in (sp.CONFIRMATION_REQUIRED_VALUE, sp.CONFIRMATION_TIMEOUT_VALUE, sp.SESSION_TTL_VALUE):
        assert f"'{name}'" in text
    assert sp.POLICY_KEY in text
    assert re.search(rf"confirmation_timeout_seconds = {sp.DEFAULT_CONFIRMATION_TIMEOUT}\b", text)
    assert re.search(rf"session_ttl_seconds = {sp.DEFAULT_SESSION_TTL}\b", text)


def test_the_write_script_knows_exactly_the_values_and_kinds_the_module_writes():
    text = _script_text("set_support_policy")
    table = dict(re.findall(r"^\s+(\w+) = '(DWord|QWord|String|MultiString)'$", text, re.MULTILINE))
    assert table == {name: kind for _option, _field, name, kind in sp.SETTINGS}
    assert sp.SHADOW_KEY in text and sp.POLICY_KEY in text
