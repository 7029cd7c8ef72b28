# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""device_info's status rules, with the controller's clock injected."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.remote_support.windows.plugins.module_utils import device_info
from ansible_collections.remote_support.windows.plugins.module_utils.errors import DeviceError

NOW = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.timezone.utc)


def facts(last_checkin="2026-11-24T11:59:00Z", device_time="2026-11-24T12:00:00Z"):
    return {
        "script_version": 1, "computer_name": "DESK-0001", "serial_number": "5CG1234XYZ", "manufacturer": "HP",
        "model": "EliteDesk 800 G6", "chassis_types": [3], "device_type": "desktop",
        "os_caption": "Microsoft Windows 11 Pro", "os_version": "10.0.22631", "os_product_type": 1,
        "last_checkin": last_checkin, "device_time": device_time,
    }


def test_recent_checkin_is_active_with_the_six_facts():
    record = device_info.record_from_facts(facts(), 900, NOW)
    assert record["status"] == "active"
    assert record["connection"]["valid"] is True and record["connection"]["reason"] is None
    assert "msg" not in record
    assert record["device"] == {
        "name": "DESK-0001", "serial_number": "5CG1234XYZ", "last_activity": "2026-11-24T11:59:00Z",
        "operating_system": "Microsoft Windows 11 Pro", "os_version": "10.0.22631", "model": "EliteDesk 800 G6",
        "device_type": "desktop",
    }
    assert record["checkin_age_seconds"] == 60 and record["clock_skew_seconds"] == 0


@pytest.mark.parametrize("age, status", [(900, "active"), (901, "idle")])
def test_idle_after_is_the_boundary(age, status):
    last = (NOW - datetime.timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert device_info.record_from_facts(facts(last_checkin=last), 900, NOW)["status"] == status


def test_never_checked_in_is_idle_with_the_seed_message():
    record = device_info.record_from_facts(facts(last_checkin=None), 900, NOW)
    assert record["status"] == "idle"
    assert record["msg"].startswith("Unable to connect to the device: the device's support agent has never checked in")
    assert "never checked in" in record["detail"]
    assert record["device"]["last_activity"] is None


def test_the_device_clock_decides_and_skew_is_reported():
    # The controller is two hours behind the device; by the controller's clock the check-in would be in the future.
    record = device_info.record_from_facts(facts(last_checkin="2026-11-24T13:59:30Z",
                                                 device_time="2026-11-24T14:00:00Z"), 900, NOW)
    assert record["status"] == "active"
    assert record["clock_skew_seconds"] == 7200
    # And a device whose clock moved far past its last check-in is idle even though the controller's clock is not.
    record = device_info.record_from_facts(facts(last_checkin="2026-11-24T11:59:00Z",
                                                 device_time="2026-11-24T15:00:00Z"), 900, NOW)
    assert record["status"] == "idle" and "by the device's clock" in record["detail"]


def test_unreachable_record_keeps_the_shape():
    record = device_info.unreachable_record(DeviceError("refused", "refused, check the listener"))
    assert record["status"] == "unreachable"
    assert record["connection"] == {"valid": False, "reason": "refused", "message": "refused, check the listener"}
    assert set(record["device"]) == set(device_info.DEVICE_FIELDS)
    assert record["msg"] == "Unable to connect to the device: refused, check the listener"


def test_probe_turns_device_errors_into_records():
    class Failing:
        def run_script(self, script):
            raise DeviceError("auth", "rejected")

    record = device_info.probe(Failing(), 900, lambda: NOW)
    assert record["status"] == "unreachable" and record["connection"]["reason"] == "auth"
