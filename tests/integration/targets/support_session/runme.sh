#!/usr/bin/env bash
# support_session against the lab's mixed fleet: the client accepts, denies or never answers; nobody logged on; an
# idle device; expiry on the device's own clock; renew inside and outside renew_before; deauthorize while pending and
# while authorized; check mode; the audit entries of each.
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 20 mixed
ansible-playbook -i "$LAB_INVENTORY" test_support_session.yml -e "lab_manifest=$LAB_MANIFEST"
