#!/usr/bin/env bash
# Each way an enterprise authenticates, against the lab: Kerberos with the lab's own KDC (over HTTPS and HTTP, with
# delegation, and its failures: wrong password, no ticket, unknown principal, another device's principal), NTLM on the
# same devices, client certificates (and a certificate mapped to no account), and CredSSP (and a wrong password). A
# machine without MIT Kerberos' KDC tools fails here, saying what to install: scripts/setup installs them.
set -eux -o pipefail
source ../setup_lab/lab.sh

start_lab 3 healthy kerberos
krb5_conf=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["auth"]["krb5_conf"])' "$LAB_MANIFEST")
# The lab's realm only, and a ticket cache of the test's own that stays empty: the collection's tickets are its own.
KRB5_CONFIG="$krb5_conf" KRB5CCNAME="FILE:$LAB_DIR/empty-ccache" \
    ansible-playbook -i "$LAB_INVENTORY" test_kerberos.yml -e "lab_manifest=$LAB_MANIFEST" -vvv | tee "$LAB_DIR/output.log"
test ! -e "$LAB_DIR/empty-ccache"
python3 - "$LAB_MANIFEST" "$LAB_DIR/output.log" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
output = open(sys.argv[2], encoding="utf-8", errors="replace").read()
passwords = {d["credentials"]["password"] for d in manifest["devices"]}
assert not [p for p in passwords if p in output], "a password appears in the -vvv output"
PY
stop_lab
trap - EXIT

start_lab 3 healthy certificate
ansible-playbook -i "$LAB_INVENTORY" test_certificate.yml -e "lab_manifest=$LAB_MANIFEST"
stop_lab
trap - EXIT

start_lab 3 healthy credssp
ansible-playbook -i "$LAB_INVENTORY" test_credssp.yml
