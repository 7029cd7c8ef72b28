#!/usr/bin/env bash
# device_info against the lab's mixed fleet: every device gets the status and reason its manifest expects, with a
# message that names what to check, and no password shows up anywhere, even at -vvv.
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 20 mixed

export ANSIBLE_HOST_KEY_CHECKING=false
ansible-playbook -i "$LAB_INVENTORY" test_device_info.yml -e "lab_manifest=$LAB_MANIFEST" -vvv \
    | tee "$LAB_DIR/output.log"

# Secrets stay secret: no password of the inventory appears in the -vvv output.
python3 - "$LAB_MANIFEST" "$LAB_DIR/output.log" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
output = open(sys.argv[2], encoding="utf-8", errors="replace").read()
passwords = {d["credentials"]["password"] for d in manifest["devices"]}
leaked = [p for p in passwords if p and p in output]
assert not leaked, f"{len(leaked)} password(s) appear in the -vvv output"
print(f"checked {len(passwords)} password(s): none in {len(output)} characters of -vvv output")
PY

# The fleet playbook shipped with the collection runs unchanged against the same inventory.
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.device_info -e "report_file=$LAB_DIR/table.txt"
grep -q "20 devices:" "$LAB_DIR/table.txt"
