#!/usr/bin/env bash
# support_audit and the audit_report playbook against the lab: a day of support on four devices (accepted, denied,
# timed out, expired, deauthorized, renewed, cancelled; transfers both ways; remote control stopped by the specialist
# and ended by the device), with the devices' clocks moved between steps, read back exactly; a log flooded until it
# overwrote the session, reported as wrapped; the fleet report in JSON, CSV and HTML, the page opened in headless
# Chromium.
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 5 healthy
names=$(python -c 'import json,sys; print(" ".join(d["name"] for d in json.load(open(sys.argv[1]))["devices"]))' "$LAB_MANIFEST")
read -r consent_host expiry_host noconf_host wrapped_host gone_host <<<"$names"
mkdir -p "$LAB_DIR/work/journal"

ansible-playbook -i "$LAB_INVENTORY" day.yml -e "lab_manifest=$LAB_MANIFEST" -e "work=$LAB_DIR/work" \
    -e "consent_host=$consent_host" -e "expiry_host=$expiry_host" -e "noconf_host=$noconf_host" \
    -e "wrapped_host=$wrapped_host" -e "day_hosts=$consent_host,$expiry_host,$noconf_host,$wrapped_host"
echo "$consent_host $expiry_host $noconf_host $wrapped_host" > "$LAB_DIR/work/journal/hosts"
python check_audit.py "$LAB_DIR/work/journal" "$consent_host" "$expiry_host" "$noconf_host" "$wrapped_host"


# --- the fleet report: the same four devices and one that refuses connections ---------------------------------------
python lab_day.py "$LAB_MANIFEST" refuse "$gone_host"
source ./chromium.sh
report="$LAB_DIR/report"
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.audit_report -e "report_dir=$report" -e last=2d \
    | tee "$LAB_DIR/report.log"
grep -F "5 devices (1 not read, 1 wrapped logs): 6 sessions, 1 denials, 4 transfers" "$LAB_DIR/report.log"
python check_report.py "$report" "$LAB_DIR/work/journal" "$gone_host" "$CHROMIUM" "$LAB_DIR/chromium"

# fail_when_unhandled: the same run fails because a device could not be read; check mode still writes the report.
if ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.audit_report -e "report_dir=$report" \
        -e fail_when_unhandled=true; then
    echo "fail_when_unhandled=true passed although a device could not be read" >&2; exit 1
fi
rm -rf "$report"
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.audit_report -e "report_dir=$report" --check
[ -s "$report/audit.html" ]

# --- bad variables: refused before any device is read ---------------------------------------------------------------
refused() {  # refused EXPECTED-TEXT -e ...
    local expected=$1; shift
    if ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.audit_report "$@" >"$LAB_DIR/bad.log" 2>&1; then
        echo "audit_report accepted $*" >&2; exit 1
    fi
    grep -F -- "$expected" "$LAB_DIR/bad.log" || { cat "$LAB_DIR/bad.log" >&2; exit 1; }
    if grep -F "TASK [Read the device's audit events]" "$LAB_DIR/bad.log"; then
        echo "a device was read despite $*" >&2; exit 1
    fi
}
refused "report_dir" -e last=1d
refused "Give last (a duration such as 7d" -e "report_dir=$report" -e last=a-week
refused "Give last (a duration such as 7d" -e "report_dir=$report" -e last=1d -e since=2026-11-24
refused "Give last (a duration such as 7d" -e "report_dir=$report" -e since=yesterday
refused "fail_when_unhandled" -e "report_dir=$report" -e fail_when_unhandled=perhaps
