"""The lab's side of a day of support: the person at the device, the device's clock and its event log, set through
the lab's control surface (not through WinRM).

    lab_day.py MANIFEST consent DEVICE accept|deny|ignore
    lab_day.py MANIFEST advance DEVICE SECONDS
    lab_day.py MANIFEST put-file DEVICE WINDOWS-PATH TEXT
    lab_day.py MANIFEST flood DEVICE MAX-SIZE-BYTES COUNT      shrink the Application log and write COUNT other events
    lab_day.py MANIFEST wait-event DEVICE EVENT-ID                until the device wrote that event
    lab_day.py MANIFEST forge DEVICE EVENT-ID TEXT              an entry under the collection's source, as a user may
    lab_day.py MANIFEST refuse DEVICE                           the device refuses connections from now on
    lab_day.py MANIFEST user DEVICE                            the logged-on user, as Windows names them
"""

import json
import sys
import time

from winrm_lab.control import ControlClient


def main() -> None:
    manifest_path, command, device, *args = sys.argv[1:]
    control = ControlClient.from_manifest(manifest_path)
    if command == "consent":
        control.set_consent(device, args[0], answer_after_seconds=0.5)
    elif command == "advance":
        print(json.dumps(control.advance_clock(device, float(args[0]))))
    elif command == "put-file":
        control.write_file(device, args[0], args[1].encode("utf-8"))
    elif command == "flood":
        # What any local program may do: the Application log is writable by every interactive user.
        control.set_event_log(device, maximum_size_bytes=int(args[0]))
        control.write_events(device, "Flood.Application", 1, "x" * 400, count=int(args[1]))
    elif command == "wait-event":
        # The device's own tasks run as the lab's scheduler gets to them: wait for the entry to be written.
        deadline = time.monotonic() + 30
        while not any(event["event_id"] == int(args[0]) for event in control.events(device, log="Application")):
            if time.monotonic() > deadline:
                raise SystemExit(f"{device} wrote no event {args[0]} within 30 s")
            time.sleep(0.2)
    elif command == "forge":
        # A local user writes under the collection's source: the Application log lets any interactive user write.
        control.write_events(device, "RemoteSupport.Windows", int(args[0]), args[1])
    elif command == "refuse":
        control.set_faults(device, refuse_connections=True)
    elif command == "user":
        print(control.device(device)["interactive_user"]["name"])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
