#!/usr/bin/env bash
# file_transfer against the lab: both directions at 0 bytes, 1 byte, one chunk, one chunk plus one byte and 100 MB
# over HTTPS and over HTTP with NTLM sealing; a non-ASCII name; idempotence, check mode, force and diff; every
# refusal; resume after a connection the lab drops at a random offset (both ways); deauthorization and expiry
# mid-transfer (both ways); confinement (planted junctions and All Users both ways, reserved names, a folder replaced
# by a junction mid-transfer both ways, a shared controller folder with planted links, NUL bytes).
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 8 healthy
work="$LAB_DIR/work"
mkdir -p "$work"
roles="$LAB_DIR/roles.json"
python3 lab_transfers.py "$LAB_MANIFEST" roles "$roles"
export ANSIBLE_FORKS=4
run() { ansible-playbook -i "$LAB_INVENTORY" "$@" -e "lab_manifest=$LAB_MANIFEST" -e "work=$work" -e "@$roles"; }

run test_file_transfer.yml
run test_resume.yml

# Mid-transfer: each response of this device comes 50 ms late, so a 40 MB transfer takes some seconds; while it
# runs, the session is ended under it.
interrupt_device=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['interrupt_device'])" "$roles")
python3 lab_transfers.py "$LAB_MANIFEST" slow "$interrupt_device" 0.05
for case in to_device:deauthorize from_device:expire to_device:expire from_device:deauthorize; do
    direction=${case%%:*}
    how=${case##*:}
    run test_interrupted.yml -e "direction=$direction" -e "how=$how" &
    transfer=$!
    python3 lab_transfers.py "$LAB_MANIFEST" when-transferring "$interrupt_device" "$how"
    wait "$transfer"
done

run test_confinement.yml
# Mid-transfer again, on the same slow device: the folder being transferred is replaced by a junction under it.
for direction in to_device from_device; do
    run test_swapped.yml -e "direction=$direction" &
    transfer=$!
    python3 lab_transfers.py "$LAB_MANIFEST" swap-when-transferring "$interrupt_device" \
        "C:\\Users\\Public\\Swap-$direction" 'C:\Windows\Temp' "C:\\Users\\Public\\Swapped-$direction"
    wait "$transfer"
done
