"""winrm-lab as users start it: files only when listening, every device as its manifest says, a clean stop."""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
import yaml

from lab_fixtures import (base_address, check_facts, checkin_age_seconds, failure_reason, lab_command, probe,
                          start_lab, tcp_connects)

IDLE_AFTER_SECONDS = 900  # device_info's default


@pytest.fixture(scope="module")
def mixed_lab(tmp_path_factory):
    # The console script users run, not just the module.
    winrm_lab = pathlib.Path(sys.executable).parent / "winrm-lab"
    lab = start_lab(tmp_path_factory.mktemp("mixed"), devices=20, scenario="mixed", base=base_address(11),
                    command=[str(winrm_lab)])
    # Checked at once: the manifest exists, so every device must already listen.
    listening = {d["name"]: tcp_connects(d["address"], d["endpoint"]["port"]) for d in lab.devices}
    yield lab, listening
    lab.stop()


def test_files_appear_only_once_every_device_listens(mixed_lab):
    lab, listening = mixed_lab
    for device in lab.devices:
        refused = device["behaviours"][0] == "port_closed"
        assert listening[device["name"]] is not refused, device["name"]


def test_inventory_and_manifest_describe_the_same_fleet_and_are_private(mixed_lab):
    lab, _ = mixed_lab
    assert stat.S_IMODE(lab.inventory_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(lab.manifest_path.stat().st_mode) == 0o600
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    groups = inventory["all"]["children"]["winrm_lab"]["children"]
    hosts = {name: variables for group in groups.values() for name, variables in group["hosts"].items()}
    assert set(hosts) == {d["name"] for d in lab.devices}
    for device in lab.devices:
        variables = hosts[device["name"]]
        assert variables["ansible_host"] == device["inventory_host"]
        assert variables["ansible_password"] == device["credentials"]["password"]
        assert variables["ansible_winrm_scheme"] == device["endpoint"]["scheme"]
        assert pathlib.Path(variables["ansible_winrm_ca_trust_path"]).read_text().startswith("-----BEGIN CERTIFICATE")
    assert lab.manifest["lab"]["device_count"] == 20
    assert lab.control.health() == {"status": "ok", "devices": 20}


def test_every_device_behaves_as_its_manifest_says(mixed_lab):
    lab, _ = mixed_lab
    ca_file = lab.manifest["ca_file"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(lab.devices)) as pool:
        outcomes = dict(zip([d["name"] for d in lab.devices],
                            pool.map(lambda entry: probe(entry, ca_file), lab.devices)))
    problems = []
    for device in lab.devices:
        outcome, expected = outcomes[device["name"]], device["expected"]
        reason = failure_reason(outcome)
        if expected["status"] == "unreachable":
            if reason != expected["reason"]:
                problems.append(f"{device['name']} {device['behaviours']}: failed with {reason} ({outcome!r}), "
                                f"expected {expected['reason']}")
            continue
        if reason is not None:
            problems.append(f"{device['name']} {device['behaviours']}: {reason} ({outcome!r}), expected to answer")
            continue
        facts = check_facts(outcome)
        assert facts["computer_name"] == device["name"]
        assert facts["serial_number"] == device["hardware"]["serial_number"]
        assert facts["model"] == device["hardware"]["model"]
        assert facts["os_caption"] == device["hardware"]["os_caption"]
        assert facts["device_type"] == device["device_type"]
        age = checkin_age_seconds(facts)
        active = age is not None and age <= IDLE_AFTER_SECONDS
        if active != (expected["status"] == "active"):
            problems.append(f"{device['name']} {device['behaviours']}: check-in age {age}, expected "
                            f"{expected['status']}")
    assert not problems, "\n".join(problems)


def test_the_script_failure_says_what_windows_said(mixed_lab):
    lab, _ = mixed_lab
    outcome = probe(lab.device("wmi_broken"), lab.manifest["ca_file"])
    assert failure_reason(outcome) == "script"
    assert outcome.stderr.decode("utf-8").strip() == "Provider load failure"


def test_sigterm_stops_cleanly_and_removes_the_files(tmp_path):
    lab = start_lab(tmp_path, devices=3, scenario="healthy", base=base_address(12))
    work_dir = pathlib.Path(lab.manifest["lab"]["work_dir"])
    device = lab.devices[0]
    assert tcp_connects(device["address"], device["endpoint"]["port"])
    code, stdout, stderr = lab.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert "3 device(s), scenario healthy, seed 1" in stdout.splitlines()[0]
    assert stdout.strip().endswith("winrm-lab: stopped")
    assert not lab.manifest_path.exists() and not lab.inventory_path.exists()
    assert not tcp_connects(device["address"], device["endpoint"]["port"])
    assert work_dir.is_dir(), "a work dir the user named is kept"


def test_sigint_stops_cleanly_and_a_temporary_work_dir_goes(tmp_path):
    manifest_path = tmp_path / "m.json"
    process = subprocess.Popen(lab_command("--devices", "2", "--base-address", base_address(13),
                                           "--manifest", str(manifest_path)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not manifest_path.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        work_dir = pathlib.Path(json.loads(manifest_path.read_text())["lab"]["work_dir"])
        assert work_dir.is_dir()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert not work_dir.exists() and not manifest_path.exists()


@pytest.mark.parametrize("arguments, message", [
    (["--devices", "0"], "--devices must be at least 1"),
    (["--base-address", "10.1.2.3"], "not a loopback address"),
    (["--base-address", "localhost"], "not an IPv4 address"),
    (["--http-port", "5986"], "must differ"),
    (["--https-port", "70000"], "outside 1-65535"),
    (["--scenario", "chaos"], "invalid choice"),
])
def test_bad_arguments_are_refused_with_a_reason(tmp_path, arguments, message):
    result = subprocess.run(lab_command(*arguments, "--manifest", str(tmp_path / "m.json")), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "m.json").exists()


def test_an_address_in_use_is_named_and_nothing_is_written(tmp_path):
    base = base_address(14)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((base, 5985))
        squatter.listen()
        result = subprocess.run(
            lab_command("--devices", "2", "--base-address", base, "--manifest", str(tmp_path / "m.json"),
                        "--inventory", str(tmp_path / "i.yml")),
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "already" in result.stderr and "--base-address" in result.stderr
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "i.yml").exists()
