#!/usr/bin/env bash
# Two overlapping runs of reauthorize_expiring against 200 lab devices: every session ends authorized and renewed
# exactly once, and the run that lost a race reports the conflict instead of overwriting.
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 200 healthy
export ANSIBLE_FORKS=40

# Sessions that need no confirmation, so the baseline is quick; then 55 minutes pass on every device.
python3 lab_sessions.py "$LAB_MANIFEST" no-confirmation
ansible-playbook -i "$LAB_INVENTORY" authorize_all.yml
python3 lab_sessions.py "$LAB_MANIFEST" snapshot > "$LAB_DIR/before.json"
python3 lab_sessions.py "$LAB_MANIFEST" advance 3300

ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.reauthorize_expiring \
    -e renew_within_minutes=10 -e "report_file=$LAB_DIR/run1.txt" > "$LAB_DIR/run1.log" 2>&1 &
first=$!
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.reauthorize_expiring \
    -e renew_within_minutes=10 -e "report_file=$LAB_DIR/run2.txt" > "$LAB_DIR/run2.log" 2>&1 &
second=$!
wait "$first"
wait "$second"
tail -n 3 "$LAB_DIR/run1.txt" "$LAB_DIR/run2.txt"

python3 lab_sessions.py "$LAB_MANIFEST" verify "$LAB_DIR/before.json" "$LAB_DIR/run1.txt" "$LAB_DIR/run2.txt"
