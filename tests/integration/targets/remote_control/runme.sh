#!/usr/bin/env bash
# remote_control against the lab's mixed fleet: started only while the session is authorized; refused when idle, not
# authorized, denied, expired or deauthorized; what the grant lets the specialist do (mstsc /shadow tried through the
# lab's control surface) in view and control mode, with and without the user's permission as the policy says; the
# device taking the grant back when its clock passes expiry and when the session is deauthorized; stopped
# idempotent; nobody logged on; a server with several users.
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 20 mixed
ansible-playbook -i "$LAB_INVENTORY" test_remote_control.yml -e "lab_manifest=$LAB_MANIFEST"
