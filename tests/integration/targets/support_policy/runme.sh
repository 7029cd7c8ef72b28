#!/usr/bin/env bash
# support_policy, support_agent, the client_confirmation role and the enforce_policy playbook against the lab's mixed
# fleet: confirmation off lets a session authorize without a prompt and on prompts again; the shadow rule follows;
# check mode changes nothing and says what would change; a second run changes nothing; bad role variables are
# refused before anything touches a device.
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 20 mixed
url=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["control"]["url"])' "$LAB_MANIFEST")
token=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["control"]["token"])' "$LAB_MANIFEST")
host_of() {  # the inventory name of the first device with behaviour $1
    python -c 'import json,sys; print(next(d["name"] for d in json.load(open(sys.argv[1]))["devices"] if d["behaviours"][0] == sys.argv[2]))' "$LAB_MANIFEST" "$1"
}
control() { curl -sf -H "Authorization: Bearer $token" "$@"; }
absent() {  # the control surface has nothing at $1 (404)
    if control "$url$1" >/dev/null; then echo "$1 exists on the device" >&2; exit 1; fi
}

# --- bad role variables: refused with a clear message, nothing reaches the device ---------------------------------
untouched=$(host_of http_ntlm_encryption)
refused() {  # refused EXPECTED-TEXT -e ...
    local expected=$1; shift
    if ansible-playbook -i "$LAB_INVENTORY" bad_vars.yml -l "$untouched" "$@" >"$LAB_DIR/bad.log" 2>&1; then
        echo "the role accepted $*" >&2; exit 1
    fi
    grep -F -- "$expected" "$LAB_DIR/bad.log" || { cat "$LAB_DIR/bad.log" >&2; exit 1; }
    # The role stopped at validation: its device tasks never ran.
    if grep -E 'TASK \[remote_support.windows.client_confirmation : (Keep the support agent|Enforce the support policy)' "$LAB_DIR/bad.log"; then
        echo "a device task ran despite $*" >&2; exit 1
    fi
}
refused "support_session_ttl must be 60 to 28800 seconds, not 0" -e support_session_ttl=0
refused "support_session_ttl must be 60 to 28800 seconds, not -60" -e support_session_ttl=-60
refused "support_session_ttl must be 60 to 28800 seconds, not 28801" -e support_session_ttl=28801
refused "client_confirmation_timeout must be 10 to 3600 seconds, not 0" -e client_confirmation_timeout=0
refused "file_transfer_max_size must be 1 to 1099511627776 bytes, not 0" -e file_transfer_max_size=0
refused "unable to convert to int" -e support_session_ttl=an-hour
refused "value of remote_control_mode must be one of: control, view, none, got: steer" -e remote_control_mode=steer
refused 'not usable: [\"Users\\\\Public\"]' -e '{"file_transfer_allowed_roots": ["Users\\Public"]}'
refused 'not usable: [\"\"]' -e '{"file_transfer_allowed_roots": ["C:\\Users", ""]}'
refused 'not usable: [\"C:\\\\Users\\\\..\\\\Windows\"]' -e '{"file_transfer_allowed_roots": ["C:\\Users\\..\\Windows"]}'
refused "is of type dict and we were unable to convert to list" -e '{"file_transfer_allowed_roots": {"C:": 1}}'
# Nothing was written on the device: no policy, no agent, no audit entry.
absent "/devices/$untouched/registry?path=HKLM:%5CSOFTWARE%5CRemoteSupport%5CPolicy"
absent "/devices/$untouched/files?path=C:%5CProgramData%5CRemoteSupport%5Cscripts"
control "$url/devices/$untouched/events?log=Application" | python -c '
import json, sys
ours = [e for e in json.load(sys.stdin) if e["source"] == "RemoteSupport.Windows"]
assert ours == [], ours'

# --- the modules, the role, confirmation on and off, check mode ------------------------------------------------------
# The heartbeat script as this collection ships it, to put older and newer versions of it on a device.
heartbeat=$(ansible-doc -t module remote_support.windows.support_agent --json | python -c '
import json, os, sys
module = json.load(sys.stdin)["remote_support.windows.support_agent"]["doc"]["filename"]
print(os.path.join(os.path.dirname(os.path.dirname(module)), "module_utils", "device_scripts", "heartbeat.ps1"))')
[ -f "$heartbeat" ]
ansible-playbook -i "$LAB_INVENTORY" test_support_policy.yml -e "lab_manifest=$LAB_MANIFEST" -e "heartbeat_file=$heartbeat"

# --- the playbook in check mode on a device never configured: it says what would change and writes nothing ----------
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.enforce_policy -l "$untouched" --check --diff \
    -e report_file="$LAB_DIR/check.txt" | tee "$LAB_DIR/check.log"
grep -F "1 devices: 1 changed, 0 unchanged, 0 unreachable, 0 failed" "$LAB_DIR/check.txt"
grep -F "heartbeat installed" "$LAB_DIR/check.txt"
grep -F '"session_ttl_seconds": 3600' "$LAB_DIR/check.log"
absent "/devices/$untouched/registry?path=HKLM:%5CSOFTWARE%5CRemoteSupport%5CPolicy"

# --- the playbook across the fleet: summary, then a second run changes nothing ----------------------------------------
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.enforce_policy -e report_file="$LAB_DIR/first.txt"
cat "$LAB_DIR/first.txt"
grep -E "^20 devices: [0-9]+ changed, [0-9]+ unchanged, 8 unreachable, 0 failed$" "$LAB_DIR/first.txt"
grep -E "^$(host_of port_closed) +unreachable +refused: " "$LAB_DIR/first.txt"
grep -E "^$(host_of wrong_credentials) +unreachable +auth: " "$LAB_DIR/first.txt"
grep -E "^$untouched +changed " "$LAB_DIR/first.txt"
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.enforce_policy -e report_file="$LAB_DIR/second.txt"
grep -Fx "20 devices: 0 changed, 12 unchanged, 8 unreachable, 0 failed" "$LAB_DIR/second.txt"
# fail_when_unhandled: the same run fails because devices could not be reached.
if ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.enforce_policy -e fail_when_unhandled=true; then
    echo "fail_when_unhandled=true passed although 8 devices could not be reached" >&2; exit 1
fi
