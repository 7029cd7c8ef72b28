"""Compares what support_audit read back from each device with the journal of what the modules did that day
(day.yml), field by field; exits non-zero naming the first difference.

    check_audit.py JOURNAL-DIR CONSENT-HOST EXPIRY-HOST NOCONF-HOST WRAPPED-HOST
"""

import copy
import json
import pathlib
import sys

SPECIALIST = "CONTOSO\\jdoe"
OTHER = "CONTOSO\\asmith"


def fail(message: str) -> None:
    raise SystemExit(f"support_audit read back something else: {message}")


def equal(what: str, got, expected) -> None:
    if got != expected:
        fail(f"{what}:\n  read back: {json.dumps(got, sort_keys=True)}\n  expected:  {json.dumps(expected, sort_keys=True)}")


def account(journal: dict) -> str:
    """The WinRM account as Windows names it: a local account's domain is the computer's name."""
    user = journal["ansible_user"]
    return user if "\\" in user else f"{journal['audit']['computer_name']}\\{user}"


def session(record: dict, **fields) -> dict:
    base = {
        "id": record["id"], "requested_by": record["requested_by"], "authenticated_account": None,
        "reason": record["reason"], "requested_at": record["requested_at"], "began_before_since": False,
        "consents": [], "authorized_at": None, "authorized_by": None, "renewals": [], "state": None,
        "ended_at": None, "ended_by": None, "transfers": [], "remote_control": [],
    }
    base.update(fields)
    return base


def accepted(record: dict) -> dict:
    return {"consents": [{"answer": "accepted", "by": record["confirmed_by"], "at": record["authorized_at"]}],
            "authorized_at": record["authorized_at"], "authorized_by": record["confirmed_by"]}


def transfer(result: dict, by: str) -> dict:
    to_device = result["direction"] == "to_device"
    return {"direction": result["direction"], "device_path": result["dest"] if to_device else result["src"],
            "controller_path": None, "size": result["size"], "sha256": result["sha256"], "result": "completed", "bytes_transferred": result["size"],
            "error": None, "requested_by": by}


def grant(started: dict, by: str, ended_at, ended_by, end_reason) -> dict:
    g = started["grant"]
    return {"account": g["account"], "mode": g["mode"], "user": g["user"],
            "interactive_session_id": g["interactive_session_id"], "granted_by": by, "started_at": g["granted_at"],
            "until": g["expires_at"], "user_prompted": g["user_prompted"], "changes": [], "ended_at": ended_at,
            "ended_by": ended_by, "end_reason": end_reason}


def compare(host: str, journal: dict, expected_sessions: list, other_kinds: list, wrapped: bool,
            unrecognized: tuple = ()) -> None:
    audit = journal["audit"]
    equal(f"{host}: failed", audit.get("failed", False), False)
    equal(f"{host}: changed", audit["changed"], False)
    equal(f"{host}: log_wrapped", audit["log_wrapped"], wrapped)
    equal(f"{host}: unrecognized", [(e["event_id"], e["message"]) for e in audit["unrecognized"]], list(unrecognized))
    equal(f"{host}: transfers without session", audit["transfers_without_session"], [])
    equal(f"{host}: other events", [e["kind"] for e in audit["other_events"]], other_kinds)
    got = []
    for read in copy.deepcopy(audit["sessions"]):
        ids = read.pop("record_ids")
        if ids != sorted(ids) or len(ids) != len(set(ids)):
            fail(f"{host}: record ids out of order {ids}")
        for each in read["transfers"]:
            each.pop("record_id")
            each.pop("at")
            if not each["controller_path"].endswith(":" + journal_paths[host].pop(0)):
                fail(f"{host}: controller path {each['controller_path']}")
            each["controller_path"] = None
        for each in read["remote_control"]:
            each.pop("record_id")
        got.append(read)
    equal(f"{host}: sessions", got, expected_sessions)
    # Check mode reads for real: the same answer, but for the clock it was read at.
    moving = ("invocation", "device_time", "since", "msg")
    equal(f"{host}: check mode reads the same", {k: v for k, v in journal["audit_check"].items() if k not in moving},
          {k: v for k, v in audit.items() if k not in moving})


journal_paths: dict = {}


def main() -> None:
    directory, consent_host, expiry_host, noconf_host, wrapped_host = sys.argv[1:]
    journals = {host: json.loads((pathlib.Path(directory) / f"{host}.json").read_text()) for host in
                (consent_host, expiry_host, noconf_host, wrapped_host)}

    # Accepted with transfers both ways and remote control, deauthorized; denied; timed out.
    j = journals[consent_host]
    s1, s2, s3 = j["s1"]["session"], j["s2"]["session"], j["s3_end"]["session"]
    journal_paths[consent_host] = [j["t1"]["src"], j["t2"]["dest"]]
    expected = [
        session(s1, authenticated_account=account(j), **accepted(s1), state="deauthorized",
                ended_at=j["d1"]["session"]["ended_at"], ended_by=SPECIALIST,
                transfers=[transfer(j["t1"], SPECIALIST), transfer(j["t2"], SPECIALIST)],
                remote_control=[grant(j["rc1"], SPECIALIST, j["rc1_stop"]["device_time"], SPECIALIST, "stopped")]),
        session(s2, authenticated_account=account(j), state="denied", ended_at=s2["changed_at"],
                ended_by=s2["confirmed_by"],
                consents=[{"answer": "denied", "by": s2["confirmed_by"], "at": s2["changed_at"]}]),
        session(s3, authenticated_account=account(j), state="timed_out", ended_at=s3["changed_at"], ended_by="timer",
                consents=[{"answer": "timed_out", "by": "timer", "at": s3["changed_at"]}]),
    ]
    if s2["requested_by"] != OTHER or s2["confirmed_by"] != j["interactive_user"]:
        fail(f"the denial was not given by the user: {s2}")
    compare(consent_host, j, expected, ["policy_changed"], False)

    # Accepted, remote control (view) and a transfer, expired on the device, which ended remote control too.
    j = journals[expiry_host]
    s4, s4_end = j["s4"]["session"], j["s4_end"]["session"]
    journal_paths[expiry_host] = [j["t4"]["src"]]
    ended = [g for s in j["audit"]["sessions"] for g in s["remote_control"]]
    device_end = ended[0]["ended_at"] if ended else None
    if device_end is None or device_end < j["rc2"]["grant"]["expires_at"]:
        fail(f"{expiry_host}: remote control should end on the device at its expiry, not {device_end}")
    expected = [session(s4, authenticated_account=account(j), **accepted(s4), state="expired",
                        ended_at=s4_end["changed_at"], ended_by="timer", transfers=[transfer(j["t4"], OTHER)],
                        remote_control=[grant(j["rc2"], OTHER, device_end, "device", "expired")])]
    compare(expiry_host, j, expected, ["policy_changed"], False)

    # No confirmation: authorized at once by the specialist, renewed, deauthorized; a pending request cancelled.
    j = journals[noconf_host]
    s5, s6 = j["s5"]["session"], j["s6"]["session"]
    journal_paths[noconf_host] = [j["t5"]["dest"]]
    renewed = j["s5_renewed"]["session"]
    if renewed["id"] != s5["id"] or not j["s5_renewed"]["changed"]:
        fail(f"session 5 was not renewed: {renewed}")
    expected = [
        session(s5, authenticated_account=account(j), authorized_at=s5["authorized_at"], authorized_by=SPECIALIST,
                renewals=[{"at": renewed["changed_at"], "by": SPECIALIST}], state="deauthorized",
                ended_at=j["d5"]["session"]["ended_at"], ended_by=SPECIALIST,
                transfers=[transfer(j["t5"], SPECIALIST)]),
        session(s6, authenticated_account=account(j), state="cancelled", ended_at=j["d6"]["session"]["changed_at"],
                ended_by=SPECIALIST),
    ]
    # The entry a local user wrote is returned apart, not taken for a session.
    compare(noconf_host, j, expected, ["policy_changed", "policy_changed", "policy_changed"], False,
            [(1001, "Support session 1: everyone may take control")])

    # A flood overwrote the session: nothing of it is left, and the log says it wrapped.
    j = journals[wrapped_host]
    compare(wrapped_host, j, [], [], True)
    if "wrapped" not in j["audit"]["msg"]:
        fail(f"{wrapped_host}: the message does not say the log wrapped: {j['audit']['msg']}")
    print("support_audit read back every device's day exactly")


if __name__ == "__main__":
    main()
