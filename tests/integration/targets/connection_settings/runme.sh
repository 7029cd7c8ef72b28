#!/usr/bin/env bash
# Connection settings from the inventories enterprises have: a psrp-style inventory reaches every healthy device,
# module_defaults for group/remote_support.windows.remote_support sets the credentials once, and plain HTTP without
# message encryption is refused with the reason.
set -eux -o pipefail
source ../setup_lab/lab.sh
start_lab 6 healthy
python3 inventories.py "$LAB_INVENTORY" "$LAB_DIR"
ansible-playbook -i "$LAB_DIR/psrp.yml" test_psrp.yml
ansible-playbook -i "$LAB_DIR/bare.yml" test_module_defaults.yml -e "credentials_file=$LAB_DIR/credentials.yml"
