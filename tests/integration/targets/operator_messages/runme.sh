#!/usr/bin/env bash
# What the operator reads, against the lab's mixed fleet: a CA file or client certificate missing on the controller is
# named as a controller file; a bad setting names itself and the value given; an idle or unreachable device is
# refused with the seed's words and the reason in the same message, in every module; a connection cut mid-transfer is
# "Connection to workstation lost", not a certificate problem; the consent prompt never names the controller's own
# login; reserved device names are refused as reserved names.
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 20 mixed

# One device per role, picked from the manifest by behaviour.
roles=$(python3 - "$LAB_MANIFEST" <<'PY'
import json, sys
devices = json.load(open(sys.argv[1]))["devices"]
def first(test):
    return next(d["name"] for d in devices if test(d))
# Consent prompts answered by a user who accepts, over HTTPS (the CA file matters there).
https_active = first(lambda d: d["endpoint"]["scheme"] == "https" and d["behaviours"][0] in ("active", "clock_behind"))
print(json.dumps({
    "https_active": https_active,
    "idle": first(lambda d: d["behaviours"][0] == "agent_idle"),
    "refused": first(lambda d: d["behaviours"][0] == "port_closed"),
    "drops": first(lambda d: d["behaviours"][0] == "drops_mid_transfer"),
}))
PY
)
echo "$roles" > "$LAB_DIR/roles.json"

export ANSIBLE_HOST_KEY_CHECKING=false
ansible-playbook -i "$LAB_INVENTORY" test_operator_messages.yml -e "lab_manifest=$LAB_MANIFEST" \
    -e "@$LAB_DIR/roles.json" -e "work=$LAB_DIR"
