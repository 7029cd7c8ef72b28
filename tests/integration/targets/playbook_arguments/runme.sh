#!/usr/bin/env bash
# The shipped playbooks against a lab of four devices (active, idle, never checked in, connection refused; seed 8
# makes the active one a VMware virtual machine with a 54-character serial number):
# - missing, wrong-typed and out-of-range variables stop every playbook with a message naming the variable and what
#   to give, before any device is contacted: the lab's request log shows no request;
# - the fleet tables name each device not handled, with what to check in words; columns hold for the long serial;
# - fail_when_unhandled ends the run non-zero, naming those devices.
set -eux -o pipefail
source ../setup_lab/lab.sh
LAB_LOG_LEVEL=info LAB_SEED=8 start_lab 4 mixed
export ANSIBLE_HOST_KEY_CHECKING=false

requests() {  # how many requests the devices have received (the lab's request log)
    grep -c -E ': https? [A-Z]+ /' "$LAB_DIR/lab.log" || true
}

refused() {  # refused PLAYBOOK EXPECTED-TEXT -e ...: the run fails with that text and no device is contacted
    local playbook=$1 expected=$2 before
    shift 2
    before=$(requests)
    if ansible-playbook -i "$LAB_INVENTORY" "remote_support.windows.$playbook" "$@" >"$LAB_DIR/refused.log" 2>&1; then
        echo "$playbook accepted $*" >&2; exit 1
    fi
    grep -F -- "$expected" "$LAB_DIR/refused.log" || { cat "$LAB_DIR/refused.log" >&2; exit 1; }
    if [ "$(requests)" != "$before" ]; then
        echo "$playbook $* contacted a device before refusing" >&2; exit 1
    fi
}

# --- missing -----------------------------------------------------------------------------------------------------
# The message names the variable, says what to give, and that nothing was done.
refused support_session "support_session: missing required arguments: reason. reason: Why the session is needed" \
    -e target="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["devices"][0]["name"])' "$LAB_MANIFEST")"
grep -F "Nothing was done on any device" "$LAB_DIR/refused.log"
grep -F "e.g. -e" "$LAB_DIR/refused.log"
refused mass_support "mass_support: missing required arguments: reason." -e max_open_prompts=5
refused audit_report "audit_report: missing required arguments: report_dir. report_dir: The folder" -e last=1d

# --- blank, wrong-typed -----------------------------------------------------------------------------------------------
refused support_session "support_session: reason must not be blank." -e "reason='   '"
refused device_info "argument 'concurrency' is of type str and we were unable to convert to int" -e concurrency=many
grep -F "concurrency: Devices probed at once." "$LAB_DIR/refused.log"
refused end_sessions "argument 'fail_when_unhandled' is of type str and we were unable to convert to bool" \
    -e fail_when_unhandled=perhaps
refused reauthorize_expiring "argument 'renew_within_minutes' is of type str" -e renew_within_minutes=soon
refused mass_support "argument 'wait_timeout' is of type str" -e reason=INC-1 -e wait_timeout=later
refused enforce_policy "value of remote_control_mode must be one of: control, view, none, got: steer" \
    -e remote_control_mode=steer

# --- out of range ---------------------------------------------------------------------------------------------------
refused device_info "device_info: concurrency must be 1 to 1000, not 0." -e concurrency=0
refused device_info "device_info: concurrency must be 1 to 1000, not 1001." -e concurrency=1001
refused device_info "device_info: idle_after must be at least 1, not 0." -e idle_after=0
refused reauthorize_expiring "renew_within_minutes must be 1 to 480, not 481." -e renew_within_minutes=481
refused support_session "support_session: wait_timeout must be 1 to 86400, not 0." -e reason=INC-1 -e wait_timeout=0
refused mass_support "mass_support: max_open_prompts must be 1 to 1000, not -5." -e reason=INC-1 -e max_open_prompts=-5
refused end_sessions "end_sessions: concurrency must be 1 to 1000, not 0." -e concurrency=0
refused enforce_policy "support_session_ttl must be 60 to 28800 seconds, not 0" -e support_session_ttl=0

# --- the fleet module's report option, given directly: for the support action only, with records as it returns them ---
fleet_refused() {  # fleet_refused EXPECTED-TEXT ARGS-JSON: the task fails with that text and no device is contacted
    local before
    before=$(requests)
    if ansible localhost -i "$LAB_INVENTORY" -m remote_support.windows.fleet -a "$2" >"$LAB_DIR/fleet.log" 2>&1; then
        echo "fleet accepted $2" >&2; exit 1
    fi
    grep -F -- "$1" "$LAB_DIR/fleet.log" || { cat "$LAB_DIR/fleet.log" >&2; exit 1; }
    [ "$(requests)" = "$before" ] || { echo "fleet $2 contacted a device before refusing" >&2; exit 1; }
}
fleet_refused "report: report is for the support action" \
    '{"action": "device_info", "report": {"dir": "'"$LAB_DIR"'/report"}}'
fleet_refused "report: the report takes a mapping of device name -> the record" \
    '{"action": "support", "options": {"reason": "INC-1"}, "report": {"dir": "'"$LAB_DIR"'/report", "earlier": {"pc-1": "done"}}}'

# --- the fleet table, and fail_when_unhandled -------------------------------------------------------------------------
# The same survey without and with the option: only the option makes the run fail, and it names the devices.
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.device_info -e "report_file=$LAB_DIR/table.txt" \
    | tee "$LAB_DIR/device_info.log"
# The request log does see a playbook that contacts the devices (so its silence above means something).
test "$(requests)" -gt 0
python3 check_tables.py "$LAB_MANIFEST" device_info "$LAB_DIR/table.txt"
if ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.device_info -e fail_when_unhandled=true \
        -e "report_file=$LAB_DIR/table-strict.txt" >"$LAB_DIR/device_info-strict.log" 2>&1; then
    echo "device_info with fail_when_unhandled=true passed although devices are idle and unreachable" >&2; exit 1
fi
python3 check_tables.py "$LAB_MANIFEST" device_info "$LAB_DIR/table-strict.txt"
python3 check_tables.py "$LAB_MANIFEST" failure "$LAB_DIR/device_info-strict.log" idle,unreachable

# reauthorize_expiring names the device it could not read, with what to check, instead of counting it as skipped.
if ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.reauthorize_expiring -e fail_when_unhandled=true \
        -e "report_file=$LAB_DIR/renewals.txt" >"$LAB_DIR/reauthorize.log" 2>&1; then
    echo "reauthorize_expiring with fail_when_unhandled=true passed although a device is unreachable" >&2; exit 1
fi
python3 check_tables.py "$LAB_MANIFEST" reauthorize_expiring "$LAB_DIR/renewals.txt"
python3 check_tables.py "$LAB_MANIFEST" failure "$LAB_DIR/reauthorize.log" unreachable

# enforce_policy: a device whose own (host) variables are out of range is not contacted, and the summary gives the
# role's reason, not "One or more items failed". The play's first host (the laptop that refuses connections, before
# the server in the lab's inventory) has valid variables, so the run goes on past the checks made once; the server's
# own come from host_vars beside the inventory.
host_of() {  # the inventory name of the device with behaviour $1
    python3 -c 'import json,sys; print(next(d["name"] for d in json.load(open(sys.argv[1]))["devices"] if d["behaviours"][0] == sys.argv[2]))' "$LAB_MANIFEST" "$1"
}
active=$(host_of active)
refusing=$(host_of port_closed)
mkdir -p "$LAB_DIR/host_vars"
echo "support_session_ttl: 30" > "$LAB_DIR/host_vars/$active.yml"
before=$(grep -c -E ": $active: https? " "$LAB_DIR/lab.log" || true)
if ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.enforce_policy \
        -l "$refusing,$active" -e fail_when_unhandled=true -e "report_file=$LAB_DIR/policy.txt" \
        >"$LAB_DIR/policy.log" 2>&1; then
    echo "enforce_policy passed although a device's variables are out of range" >&2; exit 1
fi
cat "$LAB_DIR/policy.txt"
grep -E "^$active +failed +support_session_ttl must be 60 to 28800 seconds, not 30$" "$LAB_DIR/policy.txt"
grep -E "^$refusing +unreachable +refused: .*refused the connection. Check " "$LAB_DIR/policy.txt"
grep -Fx "2 devices: 0 changed, 0 unchanged, 1 unreachable, 1 failed" "$LAB_DIR/policy.txt"
if grep -F "One or more items failed" "$LAB_DIR/policy.txt"; then exit 1; fi
test "$(grep -c -E ": $active: https? " "$LAB_DIR/lab.log" || true)" = "$before"
grep -F "2 of 2 devices not handled: $refusing, $active." "$LAB_DIR/policy.log"
rm -r "$LAB_DIR/host_vars"
