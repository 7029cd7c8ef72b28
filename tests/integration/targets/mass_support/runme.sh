#!/usr/bin/env bash
# mass_support and end_sessions against 200 lab devices whose users accept, deny or ignore the prompt, some idle,
# unreachable or with nobody logged on: each device classified as the lab set it up, every pushed and collected
# file verified by SHA-256 against the device's own copy, no session left open; a run killed midway and rerun
# finishes only the rest; end_sessions ends sessions another controller opened (one requester's, then all).
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 200 healthy
export ANSIBLE_HOST_KEY_CHECKING=false

work="$LAB_DIR/work"
mkdir -p "$work"
head -c 300000 /dev/urandom > "$work/tool.bin"
python3 lab_fleet.py "$LAB_MANIFEST" setup "$work/expected.json"

# Variables as JSON: Windows paths keep their backslashes. At most 50 prompts open at once keeps the lab (which
# shares the CI machine with the controller) inside the inventory's 10 s read timeout.
run_vars() {  # run_vars NAME REASON
    cat > "$work/$1.json" <<JSON
{"reason": "$2", "push_src": "$work/tool.bin",
 "push_dest": "C:\\\\Users\\\\Public\\\\Documents\\\\support\\\\tool.bin",
 "collect_src": "C:\\\\Users\\\\Public\\\\Documents\\\\support\\\\diag.log", "collect_dest": "$work/$1/collected",
 "report_dir": "$work/$1", "wait_timeout": 15, "max_open_prompts": 50}
JSON
}

# Bad variables are refused before any device is touched.
run_vars bad "INC-0"
if ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.mass_support -e "@$work/bad.json" \
        -e push_src=/nonexistent > "$work/bad.log" 2>&1; then
    echo "mass_support accepted a push_src that does not exist" >&2; exit 1
fi
grep -q "Nothing was done on any device" "$work/bad.log"
test ! -e "$work/bad/journal.jsonl"

# A report folder the controller cannot make is refused before any device is touched (the first run below finds
# every device as the lab set it up).
run_vars unwritable "INC-1"
if ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.mass_support -e "@$work/unwritable.json" \
        -e report_dir="$work/tool.bin/report" > "$work/unwritable.log" 2>&1; then
    echo "mass_support accepted a report_dir inside a file" >&2; exit 1
fi
grep -q "cannot be written (Not a directory).*No device was contacted" "$work/unwritable.log"

# 1. One whole run.
run_vars first "INC-4711: collect diagnostics"
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.mass_support -e "@$work/first.json" | tee "$work/first.log"
grep -q "support: 200 / 200 devices done" "$work/first.log"
python3 lab_fleet.py "$LAB_MANIFEST" verify "$work/expected.json" "$work/first.json"

# A report that cannot be written (a folder stands where report.json goes) fails the run and says what to do; no
# half-written file is left. (The rerun serves again only the devices that were not done.)
journaled=$(python3 lab_fleet.py "$LAB_MANIFEST" journal-lines "$work/first/journal.jsonl")
mv "$work/first/report.json" "$work/first/report.json.kept"
mkdir "$work/first/report.json"
if ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.mass_support -e "@$work/first.json" \
        > "$work/unwritable-report.log" 2>&1; then
    echo "mass_support ended well without writing its report" >&2; exit 1
fi
grep -q "The report cannot be written to .*choose a report folder" "$work/unwritable-report.log"
python3 lab_fleet.py "$LAB_MANIFEST" rerun-only-rest "$work/first/journal.jsonl" "$journaled"
test -z "$(find "$work/first" -maxdepth 1 -name '.report.*')"
rmdir "$work/first/report.json"
mv "$work/first/report.json.kept" "$work/first/report.json"

# 2. A run killed midway, outright (SIGKILL to ansible-playbook and its worker: Ansible gives each worker a session
#    of its own), once some devices are done; then run again with the same report_dir.
run_vars second "INC-4712: collect diagnostics again"
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.mass_support -e "@$work/second.json" \
    > "$work/killed.log" 2>&1 &
killed=$!
for _ in $(seq 900); do
    [ "$(python3 lab_fleet.py "$LAB_MANIFEST" journal-done "$work/second/journal.jsonl")" -ge 20 ] && break
    sleep 0.2
done
workers=$(ps -o pid= --ppid "$killed" || true)
# shellcheck disable=SC2086 # one id per word
kill -KILL "$killed" $workers
wait "$killed" || true
lines=$(python3 lab_fleet.py "$LAB_MANIFEST" journal-lines "$work/second/journal.jsonl")
test "$lines" -lt 200
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.mass_support -e "@$work/second.json" | tee "$work/rerun.log"
python3 lab_fleet.py "$LAB_MANIFEST" rerun-only-rest "$work/second/journal.jsonl" "$lines"
python3 lab_fleet.py "$LAB_MANIFEST" verify "$work/expected.json" "$work/second.json"

# 3. Sessions another controller opened: end one requester's, then all.
ansible-playbook -i "$LAB_INVENTORY" open_sessions.yml -e requester=controller-b -e first=0 -e last=60
ansible-playbook -i "$LAB_INVENTORY" open_sessions.yml -e requester=controller-c -e first=60 -e last=120
sleep 6  # the users who accept do so after 1 to 4 s; those who ignore leave their request pending
python3 lab_fleet.py "$LAB_MANIFEST" sessions > "$work/open.json"
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.end_sessions -e only_requested_by=controller-b \
    -e "report_file=$work/ended-b.txt"
python3 lab_fleet.py "$LAB_MANIFEST" check-ended "$work/open.json" controller-b
python3 lab_fleet.py "$LAB_MANIFEST" sessions > "$work/open-c.json"
ansible-playbook -i "$LAB_INVENTORY" remote_support.windows.end_sessions -e "report_file=$work/ended-all.txt"
python3 lab_fleet.py "$LAB_MANIFEST" check-ended "$work/open-c.json" -
tail -n 1 "$work/ended-b.txt" "$work/ended-all.txt"
