"""Checks the fleet tables and summaries the playbooks print against the lab's manifest.

  check_tables.py MANIFEST device_info TABLE             the table: columns aligned, long values cut with "...",
                                                          each device not active named with what to check, counts
  check_tables.py MANIFEST reauthorize_expiring SUMMARY  the unreachable device named with what to check, counts
  check_tables.py MANIFEST failure LOG STATUSES           fail_when_unhandled's message names exactly the devices
                                                          whose expected status is one of STATUSES (comma-separated)
"""

from __future__ import annotations

import json
import re
import sys

# Words the operator needs for each behaviour of the lab's first four devices: what happened, and what to check.
WORDS = {
    "agent_idle": ["idle", "checked in", "Check"],
    "agent_never_checked_in": ["never checked in", "Check"],
    "port_closed": ["refused", "Check"],
}


def devices(manifest_path: str) -> list[dict]:
    with open(manifest_path, encoding="utf-8") as manifest:
        return json.load(manifest)["devices"]


def lines_naming(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if line.split(" ", 1)[0] == name]


def check_words(line: str, device: dict) -> None:
    for word in WORDS[device["behaviours"][0]]:
        assert word in line, f"{device['name']} ({device['behaviours'][0]}): {word!r} missing from {line!r}"


def check_device_info(fleet: list[dict], text: str) -> None:
    table, rest = text.split("\n\n", 1)
    rows = table.splitlines()
    header = rows[0]
    starts = [match.start() for match in re.finditer(r"(?<=  )\S", header)]
    assert len(starts) == 8, header  # nine columns
    assert len(rows) == 1 + len(fleet), rows
    for row in rows[1:]:
        for start in starts:  # every cell starts where its heading does, after at least two spaces
            assert row[start - 2:start] == "  " and row[start] != " ", f"column at {start} broken in {row!r}"
    by_name = {row.split(" ", 1)[0]: row for row in rows[1:]}
    long_serials = [d for d in fleet if len(d["hardware"]["serial_number"]) > 40 and d["expected"]["status"] == "active"]
    assert long_serials, "the lab has no active device with a serial longer than 40 characters"
    for device in long_serials:
        serial = device["hardware"]["serial_number"]
        assert serial[:37] + "..." in by_name[device["name"]], by_name[device["name"]]

    named = rest.splitlines()
    assert named[0] == "Cannot be supported now, and what to check:", named
    for device in fleet:
        found = lines_naming(named, device["name"])
        if device["expected"]["status"] == "active":
            assert not found, found
        else:
            assert len(found) == 1, (device["name"], named)
            assert found[0].split()[1] == device["expected"]["status"] + ":", found
            check_words(found[0], device)
    statuses = [d["expected"]["status"] for d in fleet]
    assert named[-1] == (f"{len(fleet)} devices: {statuses.count('active')} active, {statuses.count('idle')} idle, "
                         f"{statuses.count('unreachable')} unreachable"), named[-1]


def check_reauthorize(fleet: list[dict], text: str) -> None:
    lines = text.splitlines()
    for device in fleet:
        found = lines_naming(lines, device["name"])
        if device["expected"]["status"] == "unreachable":
            assert len(found) == 1 and found[0].split()[1] == "unreachable", (device["name"], lines)
            check_words(found[0], device)
        else:
            assert not found, found  # no session to renew: counted as skipped
    unreachable = sum(d["expected"]["status"] == "unreachable" for d in fleet)
    assert lines[-1] == (f"{len(fleet)} devices: 0 renewed, 0 kept, {len(fleet) - unreachable} skipped, "
                         f"{unreachable} unreachable, 0 failed"), lines[-1]


def check_failure(fleet: list[dict], log: str, statuses: str) -> None:
    expected = sorted(d["name"] for d in fleet if d["expected"]["status"] in statuses.split(","))
    message = re.search(r"(\d+) of (\d+) devices not handled: ([^.]*)\. The summary above says why for each", log)
    assert message, "fail_when_unhandled's message is missing"
    assert int(message.group(1)) == len(expected) and int(message.group(2)) == len(fleet), message.group(0)
    assert message.group(3).split(", ") == expected, (message.group(3), expected)


def main() -> None:
    manifest, mode, path = sys.argv[1:4]
    fleet = devices(manifest)
    with open(path, encoding="utf-8") as file:
        text = file.read()
    if mode == "device_info":
        check_device_info(fleet, text)
    elif mode == "reauthorize_expiring":
        check_reauthorize(fleet, text)
    else:
        check_failure(fleet, text, sys.argv[4])
    print(f"{mode}: {path} checked against {len(fleet)} devices")


if __name__ == "__main__":
    main()
