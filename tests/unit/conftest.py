# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device every unit test drives the collection's cores against: a device of the lab (winrm_lab), run in process
through the lab's own emulation of each device script and the checks against its contract. A test sets up the
device through the lab's state (its user, agent, registry, files, faults, clock), as an integration test would
through the lab's control surface."""

from __future__ import annotations

import pytest
import requests
from winrm_lab import in_process

from ansible_collections.remote_support.windows.plugins.module_utils.winrm_failures import classify
from ansible_collections.remote_support.windows.plugins.module_utils.winrm_settings import WinRMSettings

START = in_process.DEFAULT_START
# What the collection would be connected with; classify names a failure with it, as the WinRM client does.
SETTINGS = WinRMSettings(host="10.20.0.15", port=5986, user="labadmin", password="not-used-in-process")


def as_device_error(exc):
    """An in-process connection failure as the collection's client reports it: pywinrm raises requests' errors."""
    if isinstance(exc, ConnectionResetError):
        exc = requests.exceptions.ConnectionError(exc)
    return classify(exc, SETTINGS)


@pytest.fixture
def lab(tmp_path_factory):
    """lab(behaviour="active") -> an InProcessDevice of a fresh lab device with that scenario behaviour (see the
    lab's README); its clock starts at START and moves only with advance()."""
    clients = []

    def make(behaviour="active"):
        device = in_process.device(behaviour, start=START, work_dir=tmp_path_factory.mktemp("lab"))
        client = in_process.InProcessDevice(device, error=as_device_error)
        client.settings = SETTINGS  # what the collection's client carries: the cores name the device by it
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
