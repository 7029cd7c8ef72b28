"""Sets the scene for, and checks, the file_transfer integration target through the lab's control surface (not
through WinRM, so the checks do not trust the module under test).

    lab_transfers.py MANIFEST roles OUT.json          which device plays which part
    lab_transfers.py MANIFEST files DIR CHUNK         local files of the sizes under test, and one with a non-ASCII name
    lab_transfers.py MANIFEST digest DEVICE PATH      size and SHA-256 of a device file (JSON)
    lab_transfers.py MANIFEST drop DEVICE request|response BYTES   arm a connection drop at a random offset
    lab_transfers.py MANIFEST slow DEVICE SECONDS     delay every response (0 clears it)
    lab_transfers.py MANIFEST when-transferring DEVICE deauthorize|expire   wait for a transfer, then end its session
    lab_transfers.py MANIFEST swap-when-transferring DEVICE FOLDER TARGET MOVED_TO   wait for a transfer, then replace
                                                      the device's FOLDER by a junction to TARGET (FOLDER goes to MOVED_TO)
    lab_transfers.py MANIFEST plant-local DIR DEVICE_PATH   in DIR on the controller, a file "victim" and symbolic links
                                                      to it at the names a from_device transfer of DEVICE_PATH into
                                                      DIR/innocent.bin might use, and at DIR/linked.bin (JSON: the links)
    lab_transfers.py MANIFEST check-local DIR         the victim's content and the links in DIR (JSON)
"""

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import time

from winrm_lab.control import ControlClient

TRANSFERS_KEY = "HKLM:\\SOFTWARE\\RemoteSupport\\Transfers"
SIZES_MB = 100


def wait_for_transfer(control: ControlClient, name: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if control.registry(name, TRANSFERS_KEY)["subkeys"]:
                return
        except Exception:  # the key appears with the first transfer
            pass
        time.sleep(0.05)
    raise SystemExit("no transfer started within 120 s")


def guessable_partial_names(device_path: str, local_path: str) -> list[str]:
    """The names an attacker can work out for a from_device transfer's temporary file: the transfer id is derived
    from the paths and the controller's name (file_transfer.transfer_id), so the fixed name earlier versions used
    and the collection's prefix with a guessed suffix."""
    key = "\n".join(("from_device", device_path.replace("/", "\\").lower(), socket.gethostname().lower(), local_path))
    identity = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return [f".~rs-{identity}.partial", f".~rs-{identity}-{'0' * 32}.partial"]


def local_links(folder: str) -> dict[str, str]:
    return {name: os.readlink(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
            if os.path.islink(os.path.join(folder, name))}


def main() -> None:
    manifest_path, command, *args = sys.argv[1:]
    control = ControlClient.from_manifest(manifest_path)
    manifest = json.load(open(manifest_path, encoding="utf-8"))
    if command == "roles":
        active = [d for d in manifest["devices"] if d["expected"]["status"] == "active"]
        https = [d["name"] for d in active if d["endpoint"]["scheme"] == "https"]
        http = [d["name"] for d in active if d["endpoint"]["scheme"] == "http"]
        if len(https) < 4 or not http:
            raise SystemExit(f"the lab has too few devices of each kind: {https} {http}")
        roles = {"https_device": https[0], "http_device": http[0], "fresh_device": https[1],
                 "interrupt_device": https[2], "confine_device": https[3]}
        json.dump(roles, open(args[0], "w", encoding="utf-8"))
    elif command == "files":
        folder, chunk = args[0], int(args[1])
        os.makedirs(folder, exist_ok=True)
        rng = random.Random(int(time.time()))
        sizes = {"zero.bin": 0, "one.bin": 1, "chunk.bin": chunk, "chunk_plus_one.bin": chunk + 1}
        for name, size in sizes.items():
            with open(os.path.join(folder, name), "wb") as handle:
                handle.write(rng.randbytes(size))
        with open(os.path.join(folder, "random_100mb.bin"), "wb") as handle:
            for _megabyte in range(SIZES_MB):
                handle.write(os.urandom(1000 * 1000))
        with open(os.path.join(folder, "relatório ação 日本語 Ünïcödé.txt"), "wb") as handle:
            handle.write("Olá, 世界: ação!\n".encode("utf-8") * 1000)
        print(json.dumps(sorted(os.listdir(folder)), ensure_ascii=False))
    elif command == "digest":
        print(json.dumps(control.file_digest(args[0], args[1])))
    elif command == "drop":
        name, way, size = args[0], args[1], int(args[2])
        # A random point between a quarter and three quarters of the file, counted in bytes on the wire (base64
        # grows the file by 4/3), so the drop falls mid-way whatever the envelope.
        offset = random.randint(size // 3, size)
        key = "drop_after_bytes" if way == "request" else "drop_after_response_bytes"
        control.set_faults(name, **{key: offset})
        print(json.dumps({key: offset}))
    elif command == "slow":
        control.set_faults(args[0], latency_seconds=float(args[1]))
    elif command == "swap-when-transferring":
        name, folder, target, moved_to = args
        wait_for_transfer(control, name)
        time.sleep(0.5)  # some chunks in
        print(json.dumps(control.plant_link(name, folder, target, move_existing_to=moved_to)))
    elif command == "plant-local":
        folder, device_path = args
        os.makedirs(folder, exist_ok=True)
        victim = os.path.join(folder, "victim")
        with open(victim, "w", encoding="utf-8") as handle:
            handle.write("precious")
        local_path = os.path.abspath(os.path.join(folder, "innocent.bin"))
        for link in [*guessable_partial_names(device_path, local_path), "linked.bin"]:
            os.symlink(victim, os.path.join(folder, link))
        print(json.dumps({"links": local_links(folder)}))
    elif command == "check-local":
        with open(os.path.join(args[0], "victim"), encoding="utf-8") as handle:
            print(json.dumps({"victim": handle.read(), "links": local_links(args[0])}))
    elif command == "when-transferring":
        name, how = args
        wait_for_transfer(control, name)
        time.sleep(0.5)  # some chunks in
        if how == "expire":
            print(json.dumps(control.advance_clock(name, 3700)))
        else:
            subprocess.run(["ansible-playbook", "-i", os.environ["LAB_INVENTORY"], "deauthorize.yml", "-l", name],
                           check=True)
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
