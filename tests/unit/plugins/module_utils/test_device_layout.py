# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""device_layout.json is the one declaration of what the collection leaves on a device: the scripts take it as the
library device_layout, the controller's constants come from it, and every contract names its events from it."""

from __future__ import annotations

import glob
import os
import re

import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import device_script
from ansible_collections.remote_support.windows.plugins.module_utils import support_agent
from ansible_collections.remote_support.windows.plugins.module_utils import support_audit
from ansible_collections.remote_support.windows.plugins.module_utils import support_policy
from ansible_collections.remote_support.windows.plugins.module_utils import support_session

LAYOUT = device_script.layout()
NAMES = device_script.script_names()
RENDERED = device_script.library(device_script.LAYOUT_LIBRARY)
# Each layout entry a rendered variable could stand for, as text a script might spell out instead of using it.
LITERALS = [*LAYOUT["registry"].values(), *LAYOUT["tasks"].values(), LAYOUT["event_source"], LAYOUT["session_mutex"]]


def _variables(text):
    return dict(re.findall(r"^\$(\w+) = (.+)$", text, re.MULTILINE))


def test_the_library_declares_every_entry_once():
    variables = _variables(RENDERED)
    assert len(variables) == len(RENDERED.splitlines()) - 2, "one variable a line, after the two header lines"
    assert variables["sessionKey"] == "'HKLM:\\SOFTWARE\\RemoteSupport\\Session'"
    assert variables["consentPromptTask"] == "'RemoteSupport-ConsentPrompt'"
    assert variables["scriptFolder"] == "Join-Path -Path $env:ProgramData -ChildPath 'RemoteSupport\\scripts'"
    assert variables["sessionAuthorizedEventId"] == "1001" and variables["consentAnsweredEventId"] == "1010"
    assert variables["scriptFolderGrants"] == ("@(@('S-1-5-18', 'FullControl'), @('S-1-5-32-544', 'FullControl'), "
                                               "@('S-1-5-32-545', 'ReadAndExecute'))")
    ids = [value for name, value in variables.items() if name.endswith("EventId")]
    assert len(ids) == len(set(ids)) == 18, "every event id is its own"


def test_the_rendering_quotes_text_as_powershell_does():
    assert device_script._ps_value("it's") == "'it''s'"
    with pytest.raises(ValueError):
        device_script._ps_value({"a": 1})


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(device_script.SCRIPTS_DIR, "*.ps1"))
                                        + glob.glob(os.path.join(device_script.LIBRARY_DIR, "*.ps1"))),
                         ids=os.path.basename)
def test_no_script_spells_out_what_the_layout_declares(path):
    with open(path, encoding="utf-8") as handle:
        code = "\n".join(line for line in handle.read().splitlines() if not line.lstrip().startswith("#"))
    for literal in LITERALS:
        assert f"'{literal}'" not in code, f"{os.path.basename(path)} spells out '{literal}': use the device_layout variable"


@pytest.mark.parametrize("name", NAMES)
def test_the_layout_goes_in_before_every_other_library(name):
    with open(os.path.join(device_script.SCRIPTS_DIR, f"{name}.ps1"), encoding="utf-8") as handle:
        taken = re.findall(r"^# library: *(\S+)", handle.read(), re.MULTILINE)
    assert taken[:1] == [device_script.LAYOUT_LIBRARY], f"{name}.ps1 takes {taken}"


@pytest.mark.parametrize("name", [n for n in NAMES if "audit_events" in device_script.load(n).contract])
def test_a_contracts_events_are_the_layouts_and_the_script_writes_them(name):
    script = device_script.load(name)
    for what, event in script.contract["audit_events"].items():
        event_id = device_script.event_id(event)
        variable = device_script._camel(*event.split("."), "event_id")
        assert f"${variable} = {event_id}" in script.text
        assert script.text.count(f"${variable}") >= 2, f"{name}.ps1 never writes {event} ({what}, {event_id})"


def test_an_event_name_that_is_a_group_is_refused():
    with pytest.raises(KeyError):
        device_script.event_id("session")


def test_the_controllers_constants_are_the_layouts():
    events = LAYOUT["events"]
    assert support_session.AUDIT_EVENT_IDS == events["session"]
    assert support_audit.SESSION_EVENTS == {i: w for w, i in events["session"].items()}
    assert support_audit.TRANSFER_EVENTS == {i: w for w, i in events["transfer"].items()}
    assert (support_audit.REMOTE_CONTROL_GRANTED, support_audit.REMOTE_CONTROL_STOPPED,
            support_audit.REMOTE_CONTROL_ENDED_BY_DEVICE) == (1020, 1021, 1022)
    assert support_audit.CONSENT_ANSWERED == 1010
    assert support_policy.POLICY_CHANGED_EVENT_ID == support_audit.POLICY_CHANGED == 1040
    assert support_agent.AGENT_CHANGED_EVENT_ID == support_audit.AGENT_CHANGED == 1041
    assert support_agent.AGENT_REMOVED_EVENT_ID == 1042
    assert support_agent.HEARTBEAT_TASK == "RemoteSupport-Heartbeat"
    assert support_policy.POLICY_KEY == "HKLM:\\SOFTWARE\\RemoteSupport\\Policy"
