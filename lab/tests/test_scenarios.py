"""Fleets are deterministic, look like real Windows machines, and the mixed scenario covers every outcome."""

from __future__ import annotations

import json
import re
import stat

import pytest
import yaml

from winrm_lab import outputs
from winrm_lab.scenarios import MIXED, SCENARIOS, build_fleet, device_addresses

STATUSES = {"active", "idle", "unreachable"}
REASONS = {None, "dns", "refused", "timeout", "tls", "auth", "protocol", "quota", "script"}

# The Caption and Version pairs Windows reports (Win32_OperatingSystem) for the systems the lab simulates.
REAL_SYSTEMS = {
    "Microsoft Windows 10 Pro": {"10.0.19045"},
    "Microsoft Windows 10 Enterprise": {"10.0.19045"},
    "Microsoft Windows 11 Pro": {"10.0.22631", "10.0.26100"},
    "Microsoft Windows 11 Enterprise": {"10.0.22631", "10.0.26100"},
    "Microsoft Windows Server 2019 Standard": {"10.0.17763"},
    "Microsoft Windows Server 2019 Datacenter": {"10.0.17763"},
    "Microsoft Windows Server 2022 Standard": {"10.0.20348"},
    "Microsoft Windows Server 2022 Datacenter": {"10.0.20348"},
}

SERIAL_PATTERNS = {
    "Dell Inc.": r"[0-9B-DF-HJ-NP-TV-Z]{7}",
    "HP": r"(5CG|MXL|CZC|8CG)\d{4}[0-9A-Z]{3}",
    "HPE": r"(CZJ|MXQ)\d{4}[0-9A-Z]{3}",
    "LENOVO": r"(PF|R9|MJ|S1)[0-9A-Z]{6}",
    "VMware, Inc.": r"VMware-([0-9a-f]{2} ){7}[0-9a-f]{2}-([0-9a-f]{2} ){7}[0-9a-f]{2}",
}


def identity_view(fleet):
    """Everything seeded about a fleet: not its passwords, not the moment it was built."""
    return [
        (d.name, d.address, d.hardware, d.interactive_user, d.behaviours, d.expected, d.faults, d.service,
         d.agent.running, d.wmi_error, d.inventory_host, fleet.connections[d.name].scheme,
         fleet.connections[d.name].port, d.clock.offset_seconds)
        for d in fleet.devices
    ]


def test_the_same_seed_builds_the_same_fleet(tmp_path):
    first = build_fleet(60, "mixed", 7, work_dir=tmp_path / "a")
    second = build_fleet(60, "mixed", 7, work_dir=tmp_path / "b")
    assert identity_view(first) == identity_view(second)


def test_another_seed_builds_other_machines(tmp_path):
    names_7 = [d.name for d in build_fleet(20, "mixed", 7, work_dir=tmp_path).devices]
    names_8 = [d.name for d in build_fleet(20, "mixed", 8, work_dir=tmp_path).devices]
    assert not set(names_7) & set(names_8)


def test_a_larger_fleet_starts_with_the_smaller_one(tmp_path):
    small = build_fleet(20, "mixed", 3, work_dir=tmp_path)
    large = build_fleet(100, "mixed", 3, work_dir=tmp_path)
    assert identity_view(large)[:20] == identity_view(small)


def test_healthy_and_mixed_share_their_machines(tmp_path):
    healthy = build_fleet(20, "healthy", 3, work_dir=tmp_path).devices
    mixed = build_fleet(20, "mixed", 3, work_dir=tmp_path).devices
    assert [(d.name, d.hardware) for d in healthy] == [(d.name, d.hardware) for d in mixed]


def test_first_twenty_mixed_devices_show_every_status_and_reason(tmp_path):
    fleet = build_fleet(20, "mixed", 1, work_dir=tmp_path)
    assert {d.expected["status"] for d in fleet.devices} == STATUSES
    assert {d.expected["reason"] for d in fleet.devices} == REASONS
    schemes = {fleet.connections[d.name].scheme for d in fleet.devices}
    assert schemes == {"http", "https"}
    for device in fleet.devices:
        assert device.expected["status"] in STATUSES and device.expected["reason"] in REASONS
        # A reason is given exactly when the connection is not valid.
        assert (device.expected["reason"] is None) == (device.expected["status"] != "unreachable")


def test_fewer_devices_get_the_most_important_behaviours_first(tmp_path):
    fleet = build_fleet(5, "mixed", 1, work_dir=tmp_path)
    assert [d.behaviours[0] for d in fleet.devices] == [b.name for b in MIXED[:5]]


def test_the_mixed_scenario_repeats_past_its_list(tmp_path):
    fleet = build_fleet(len(MIXED) * 2 + 1, "mixed", 1, work_dir=tmp_path)
    first = [d.behaviours[0] for d in fleet.devices[:len(MIXED)]]
    second = [d.behaviours[0] for d in fleet.devices[len(MIXED):2 * len(MIXED)]]
    assert first == second


def test_healthy_devices_are_all_active_with_a_consenting_user(tmp_path):
    fleet = build_fleet(40, "healthy", 2, work_dir=tmp_path)
    for device in fleet.devices:
        assert device.expected == {"status": "active", "reason": None}
        assert device.agent.running and device.wmi_error is None
        assert device.interactive_user is not None and device.interactive_user.consent == "accept"
        assert device.faults.refuse_connections is False and device.faults.certificate == "valid"
        assert not device.faults.blackhole and not device.faults.http_500 and device.faults.latency_seconds == 0
        connection = fleet.connections[device.name]
        assert connection.password == device.accounts[connection.username]
        assert connection.host == device.address


def test_devices_look_like_real_windows_machines(tmp_path):
    fleet = build_fleet(300, "healthy", 5, work_dir=tmp_path)
    names = [d.name for d in fleet.devices]
    assert len(set(names)) == len(names)
    kinds = set()
    for device in fleet.devices:
        hardware = device.hardware
        assert len(device.name) <= 15  # NetBIOS limit
        assert re.fullmatch(r"(DESKTOP-[0-9A-Z]{7}|LAPTOP-[0-9A-Z]{8}|WIN-[0-9A-Z]{11})", device.name)
        assert hardware.os_version in REAL_SYSTEMS[hardware.os_caption]
        kind = outputs.device_kind(device)
        kinds.add(kind)
        assert ("Server" in hardware.os_caption) == (kind == "server") == (hardware.os_product_type == 3)
        assert device.name.startswith({"desktop": "DESKTOP-", "laptop": "LAPTOP-", "server": "WIN-"}[kind])
        pattern = SERIAL_PATTERNS.get(hardware.manufacturer)
        if pattern:
            assert re.fullmatch(pattern, hardware.serial_number), (hardware.manufacturer, hardware.serial_number)
    assert kinds == {"desktop", "laptop", "server"}
    assert {d.hardware.os_caption.split(" ")[2] for d in fleet.devices} >= {"10", "11", "Server"}


def test_each_device_has_its_own_loopback_address(tmp_path):
    fleet = build_fleet(300, "healthy", 1, base_address="127.40.0.200", http_port=15985, https_port=15986,
                        work_dir=tmp_path)
    addresses = [d.address for d in fleet.devices]
    assert len(set(addresses)) == 300
    assert all(a.startswith("127.") and not a.endswith((".0", ".255")) for a in addresses)
    assert addresses[:2] == ["127.40.0.200", "127.40.0.201"]
    assert {(d.http_port, d.https_port) for d in fleet.devices} == {(15985, 15986)}
    assert all(d.file_root == tmp_path / "devices" / d.name for d in fleet.devices)


def test_addresses_must_stay_on_loopback():
    with pytest.raises(ValueError, match="loopback"):
        device_addresses("10.0.0.1", 3)
    with pytest.raises(ValueError, match="IPv4"):
        device_addresses("not-an-address", 3)
    with pytest.raises(ValueError, match="do not fit"):
        device_addresses("127.255.255.250", 10)


def test_unknown_scenario_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown scenario"):
        build_fleet(3, "chaos", 1, work_dir=tmp_path)
    assert set(SCENARIOS) == {"healthy", "mixed"}


def test_mixed_failures_are_configured_as_their_behaviours_say(tmp_path):
    fleet = build_fleet(20, "mixed", 1, work_dir=tmp_path)
    by_behaviour = {d.behaviours[0]: d for d in fleet.devices}
    assert by_behaviour["port_closed"].faults.refuse_connections
    assert by_behaviour["unknown_host"].inventory_host.endswith(".invalid")
    assert fleet.connections[by_behaviour["unknown_host"].name].host.endswith(".invalid")
    wrong = by_behaviour["wrong_credentials"]
    assert fleet.connections[wrong.name].password != wrong.accounts[fleet.connections[wrong.name].username]
    assert by_behaviour["certificate_mismatch"].faults.certificate == "mismatch"
    assert fleet.connections[by_behaviour["certificate_mismatch"].name].scheme == "https"
    assert by_behaviour["blackhole"].faults.blackhole
    assert by_behaviour["http_500"].faults.http_500
    assert by_behaviour["wmi_broken"].wmi_error
    assert by_behaviour["slow_responses"].faults.latency_seconds > 0
    assert by_behaviour["drops_mid_transfer"].faults.drop_after_bytes
    assert by_behaviour["user_denies"].interactive_user.consent == "deny"
    assert by_behaviour["user_never_answers"].interactive_user.consent == "ignore"
    assert by_behaviour["no_user_logged_on"].interactive_user is None
    assert fleet.connections[by_behaviour["http_ntlm_encryption"].name].scheme == "http"
    assert by_behaviour["agent_never_checked_in"].last_checkin() is None
    idle = by_behaviour["agent_idle"]
    assert (idle.clock.now() - idle.last_checkin()).total_seconds() > 2 * 86400
    behind = by_behaviour["clock_behind"]
    assert behind.clock.offset_seconds <= -3600
    assert 0 <= (behind.clock.now() - behind.last_checkin()).total_seconds() <= 60


def test_inventory_holds_the_standard_variables_and_is_private(tmp_path):
    fleet = build_fleet(20, "mixed", 1, work_dir=tmp_path)
    path = outputs.write_inventory(tmp_path / "out" / "inventory.yml", fleet, tmp_path / "ca.pem")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = yaml.safe_load(path.read_text())
    groups = document["all"]["children"]["winrm_lab"]["children"]
    assert set(groups) <= {"desktops", "laptops", "servers"}
    hosts = {name: variables for group in groups.values() for name, variables in group["hosts"].items()}
    assert set(hosts) == {d.name for d in fleet.devices}
    for device in fleet.devices:
        variables = hosts[device.name]
        connection = fleet.connections[device.name]
        assert variables["ansible_host"] == connection.host
        assert variables["ansible_port"] == connection.port
        assert variables["ansible_password"] == connection.password
        assert variables["ansible_connection"] == "winrm"
        assert variables["ansible_winrm_transport"] == "ntlm"
        assert variables["ansible_winrm_server_cert_validation"] == "validate"
        assert variables["ansible_winrm_ca_trust_path"] == str(tmp_path / "ca.pem")
        assert variables["ansible_winrm_message_encryption"] == ("always" if connection.scheme == "http" else "auto")
        assert variables["ansible_winrm_read_timeout_sec"] > variables["ansible_winrm_operation_timeout_sec"]
        assert variables["ansible_winrm_read_timeout_sec"] <= 15  # a silent device fails in about ten seconds
        group = {"desktop": "desktops", "laptop": "laptops", "server": "servers"}[outputs.device_kind(device)]
        assert device.name in groups[group]["hosts"]


def test_manifest_describes_devices_and_the_control_surface(tmp_path):
    fleet = build_fleet(20, "mixed", 1, work_dir=tmp_path)
    path = outputs.write_manifest(tmp_path / "manifest.json", fleet, tmp_path / "ca.pem", "http://127.0.0.1:1",
                                  "secret-token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["control"] == {"url": "http://127.0.0.1:1", "token": "secret-token"}
    assert len(document["devices"]) == 20
    for entry, device in zip(document["devices"], fleet.devices):
        assert entry["name"] == device.name
        assert entry["expected"] == device.expected
        assert entry["behaviours"] == device.behaviours
        assert entry["ca_file"] == str(tmp_path / "ca.pem")
        assert entry["credentials"]["accepted"] == ("wrong_credentials" not in device.behaviours)
        assert entry["endpoint"]["url"] == fleet.connections[device.name].url
        assert {e["scheme"] for e in entry["endpoints"]} == {"http", "https"}
    assert not list(tmp_path.glob(".manifest.json.*")), "the temporary file of the atomic write is left behind"
