#!/usr/bin/env bash
# A machine credential the way AWX passes it: -u USER --ask-pass, no user or password in the inventory. Every healthy
# device is reached, through ansible-playbook on a terminal and through ansible-runner, and the password shows up in
# no output, artifact or event.
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 6 healthy

set +x  # the password is the secret under test: keep it out of the trace
credentials=$(python3 strip_credentials.py "$LAB_INVENTORY" "$LAB_DIR/awx_inventory.yml" "$LAB_MANIFEST")
LAB_USER=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["user"])' "$credentials")
LAB_PASSWORD=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["password"])' "$credentials")
export LAB_USER LAB_PASSWORD
set -x
python3 ask_pass.py "$LAB_DIR/awx_inventory.yml" "$LAB_DIR"
