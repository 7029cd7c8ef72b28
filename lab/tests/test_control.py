"""The control surface changes what a device is, and WinRM clients see the change."""

from __future__ import annotations

import urllib.request

import pytest

from lab_fixtures import check_facts, checkin_age_seconds, failure_reason, module_lab, probe, tcp_connects
from winrm_lab.control import ControlClient, ControlError

AGENT_KEY = r"HKLM:\SOFTWARE\RemoteSupport\Agent"


# Each test below takes a device of its own, so their changes do not meet.
lab = module_lab("control", devices=12, seed=4, slot=21)


def device(lab, index):
    return lab.devices[index]


def facts_of(lab, entry, **options):
    return check_facts(probe(entry, lab.manifest["ca_file"], **options))


def test_devices_are_listed_and_read(lab):
    listed = lab.control.devices()
    assert [d["name"] for d in listed] == [d["name"] for d in lab.devices]
    state = lab.control.device(lab.devices[0]["name"].lower())  # names are case-insensitive
    assert state["name"] == lab.devices[0]["name"]
    assert state["hardware"]["serial_number"] == lab.devices[0]["hardware"]["serial_number"]
    assert state["agent"]["running"] is True
    assert "labadmin" in state["accounts"] and "password" not in str(state["accounts"])


def test_requests_need_the_token_and_a_known_device(lab):
    stranger = ControlClient(lab.control.url, "not-the-token")
    with pytest.raises(ControlError) as refused:
        stranger.devices()
    assert refused.value.status == 401
    with pytest.raises(ControlError) as missing:
        lab.control.device("NO-SUCH-PC")
    assert missing.value.status == 404
    request = urllib.request.Request(lab.control.url + "/health")
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(request, timeout=10)
    assert anonymous.value.code == 401


def test_moving_the_clock_moves_device_time(lab):
    entry = device(lab, 0)
    before = facts_of(lab, entry)
    answer = lab.control.advance_clock(entry["name"], 6 * 3600)
    after = facts_of(lab, entry)
    assert after["device_time"] >= answer["device_time"] > before["device_time"]
    hours = int(after["device_time"][11:13]) - int(before["device_time"][11:13])
    assert hours % 24 in (6, 7)  # six hours later (seven if a whole hour ticked by meanwhile)
    assert checkin_age_seconds(after) <= 60  # a running agent kept checking in
    with pytest.raises(ControlError) as backwards:
        lab.control.advance_clock(entry["name"], -5)
    assert backwards.value.status == 400


def test_a_stopped_agents_check_in_ages_until_it_starts_again(lab):
    entry = device(lab, 1)
    stopped = lab.control.set_agent(entry["name"], running=False)
    assert stopped["running"] is False
    frozen = facts_of(lab, entry)["last_checkin"]
    lab.control.advance_clock(entry["name"], 1800)
    later = facts_of(lab, entry)
    assert later["last_checkin"] == frozen
    assert checkin_age_seconds(later) >= 1800  # idle by device_info's default of 900 s
    registry = lab.control.registry(entry["name"], AGENT_KEY)
    assert registry["values"]["LastCheckIn"] == frozen
    assert any(e["source"] == "RemoteSupportAgent" and "stopped" in e["message"]
               for e in lab.control.events(entry["name"]))
    lab.control.set_agent(entry["name"], running=True)
    assert checkin_age_seconds(facts_of(lab, entry)) <= 60


def test_faults_are_set_seen_by_clients_and_cleared(lab):
    entry = device(lab, 2)
    ca_file = lab.manifest["ca_file"]
    faults = lab.control.set_faults(entry["name"], http_500=True)
    assert faults["http_500"] is True
    assert failure_reason(probe(entry, ca_file)) == "protocol"
    lab.control.clear_faults(entry["name"])
    check_facts(probe(entry, ca_file))

    lab.control.set_faults(entry["name"], wmi_error="Invalid class ")
    assert failure_reason(probe(entry, ca_file)) == "script"
    lab.control.set_faults(entry["name"], wmi_error=None, latency_seconds=0.3)
    check_facts(probe(entry, ca_file))  # slower, still answering
    assert lab.control.clear_faults(entry["name"]) == lab.control.faults(lab.devices[3]["name"])


def test_refusing_connections_closes_and_reopens_the_listeners(lab):
    entry = device(lab, 3)
    lab.control.set_faults(entry["name"], refuse_connections=True)
    assert not tcp_connects(entry["address"], entry["endpoint"]["port"])
    assert failure_reason(probe(entry, lab.manifest["ca_file"])) == "refused"
    lab.control.clear_faults(entry["name"])
    assert tcp_connects(entry["address"], entry["endpoint"]["port"])
    check_facts(probe(entry, lab.manifest["ca_file"]))


def test_certificate_and_blackhole_faults(lab):
    https = next(d for d in lab.devices[4:] if d["endpoint"]["scheme"] == "https")
    for kind in ("mismatch", "untrusted", "expired"):
        lab.control.set_faults(https["name"], certificate=kind)
        assert failure_reason(probe(https, lab.manifest["ca_file"])) == "tls", kind
    lab.control.clear_faults(https["name"])
    check_facts(probe(https, lab.manifest["ca_file"]))

    entry = device(lab, 5) if device(lab, 5) is not https else device(lab, 6)
    lab.control.set_faults(entry["name"], blackhole=True)
    assert failure_reason(probe(entry, lab.manifest["ca_file"], operation_timeout=1, read_timeout=2)) == "timeout"
    lab.control.clear_faults(entry["name"])
    check_facts(probe(entry, lab.manifest["ca_file"]))


def test_a_dropped_connection_fires_once(lab):
    entry = device(lab, 7)
    lab.control.set_faults(entry["name"], drop_after_bytes=1)
    assert failure_reason(probe(entry, lab.manifest["ca_file"])) == "protocol"
    assert lab.control.faults(entry["name"])["drop_after_bytes"] is None  # cleared after it fired
    check_facts(probe(entry, lab.manifest["ca_file"]))


def test_service_settings_and_passwords_change_what_clients_get(lab):
    entry = device(lab, 8)
    lab.control.update_service(entry["name"], max_shells_per_user=0)
    assert failure_reason(probe(entry, lab.manifest["ca_file"])) == "quota"
    lab.control.update_service(entry["name"], max_shells_per_user=30)
    check_facts(probe(entry, lab.manifest["ca_file"]))
    with pytest.raises(ControlError) as wrong_type:
        lab.control.update_service(entry["name"], max_shells_per_user="many")
    assert wrong_type.value.status == 400

    lab.control.set_password(entry["name"], "labadmin", "Changed-On-The-Device-1")
    assert failure_reason(probe(entry, lab.manifest["ca_file"])) == "auth"
    lab.control.set_password(entry["name"], "labadmin", entry["credentials"]["password"])
    check_facts(probe(entry, lab.manifest["ca_file"]))


def test_the_interactive_user_can_log_on_change_its_mind_and_log_off(lab):
    name = device(lab, 9)["name"]
    user = lab.control.log_user_on(name, "CONTOSO\\maria.lopes", consent="accept", answer_after_seconds=3)
    assert user["name"] == "CONTOSO\\maria.lopes" and user["consent"] == "accept"
    assert lab.control.set_consent(name, "deny")["consent"] == "deny"
    assert lab.control.device(name)["interactive_user"]["answer_after_seconds"] == 3
    with pytest.raises(ControlError) as bad:
        lab.control.set_consent(name, "maybe")
    assert bad.value.status == 400
    lab.control.log_user_off(name)
    assert lab.control.device(name)["interactive_user"] is None
    with pytest.raises(ControlError):
        lab.control.set_consent(name, "accept")  # nobody to ask
    assert any(e["event_id"] == 7002 for e in lab.control.events(name, log="System"))


def test_files_round_trip_and_stay_inside_the_device(lab):
    name = device(lab, 10)["name"]
    data = "olá, device\r\n".encode("utf-8") + bytes(range(256))
    written = lab.control.write_file(name, r"C:\Users\Public\Documents\note.bin", data)
    assert written["size"] == len(data)
    assert lab.control.read_file(name, r"C:\Users\Public\Documents\note.bin") == data
    listing = lab.control.list_files(name, r"C:\Users\Public\Documents")
    assert listing == [{"name": "note.bin", "type": "file", "size": len(data)}]
    lab.control.delete_file(name, r"C:\Users\Public\Documents\note.bin")
    with pytest.raises(ControlError) as gone:
        lab.control.read_file(name, r"C:\Users\Public\Documents\note.bin")
    assert gone.value.status == 404
    for outside in (r"C:\..\..\etc\passwd", "/etc/passwd", r"\\server\share\x"):
        with pytest.raises(ControlError) as refused:
            lab.control.read_file(name, outside)
        assert refused.value.status == 400


def test_registry_values_round_trip(lab):
    name = device(lab, 11)["name"]
    key = r"HKLM:\SOFTWARE\RemoteSupport\Policy"
    lab.control.set_registry_value(name, key, "ClientConfirmation", 1)
    lab.control.set_registry_value(name, key, "Blob", b"\x00\x01")
    lab.control.set_registry_value(name, key, "Names", ["a", "b"])
    values = lab.control.registry(name, key)["values"]
    assert values == {"ClientConfirmation": 1, "Blob": {"base64": "AAE="}, "Names": ["a", "b"]}
    assert "Policy" in lab.control.registry(name, r"HKLM:\SOFTWARE\RemoteSupport")["subkeys"]
    lab.control.delete_registry(name, key, "Blob")
    assert "Blob" not in lab.control.registry(name, key)["values"]
    lab.control.delete_registry(name, key)
    with pytest.raises(ControlError) as gone:
        lab.control.registry(name, key)
    assert gone.value.status == 404


def test_every_clock_can_move_at_once(lab):
    before = {d["name"]: lab.control.device(d["name"])["clock"]["offset_seconds"] for d in lab.devices}
    answers = lab.control.advance_all_clocks(60)
    assert len(answers) == len(lab.devices)
    for answer in answers:
        assert answer["offset_seconds"] == pytest.approx(before[answer["name"]] + 60)
