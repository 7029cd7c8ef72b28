"""From the lab's inventory, writes the inventories this target needs:
- psrp.yml: every host as an inventory for the psrp connection has it (ansible_connection psrp, ansible_psrp_*);
- bare.yml: no user or password, with credentials.yml (0600) holding them for module_defaults."""
import os
import sys

import yaml

source, directory = sys.argv[1:3]
inventory = yaml.safe_load(open(source, encoding="utf-8"))

PSRP = {
    "ansible_winrm_scheme": "ansible_psrp_protocol",
    "ansible_winrm_server_cert_validation": "ansible_psrp_cert_validation",
    "ansible_winrm_ca_trust_path": "ansible_psrp_ca_cert",
    "ansible_winrm_message_encryption": "ansible_psrp_message_encryption",
    "ansible_winrm_connection_timeout": "ansible_psrp_connection_timeout",
    "ansible_winrm_operation_timeout_sec": "ansible_psrp_operation_timeout",
    "ansible_winrm_read_timeout_sec": "ansible_psrp_read_timeout",
}


def hosts(group):
    yield from (group.get("hosts") or {}).values()
    for child in (group.get("children") or {}).values():
        yield from hosts(child)


def dump(name, document, mode=0o600):
    path = os.path.join(directory, name)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        yaml.safe_dump(document, stream)


credentials = {}
for host in hosts(inventory["all"]):
    credentials = {"lab_user": host.pop("ansible_user"), "lab_password": host.pop("ansible_password")}
dump("bare.yml", inventory)
dump("credentials.yml", credentials)

inventory = yaml.safe_load(open(source, encoding="utf-8"))
for number, host in enumerate(hosts(inventory["all"])):
    host["ansible_connection"] = "psrp"
    host.pop("ansible_winrm_transport")
    # psrp's default auth is negotiate (Kerberos, then NTLM); half the hosts name NTLM outright.
    if number % 2:
        host["ansible_psrp_auth"] = "ntlm"
    for winrm_name, psrp_name in PSRP.items():
        host[psrp_name] = host.pop(winrm_name)
    assert not [name for name in host if name.startswith("ansible_winrm_")]
dump("psrp.yml", inventory)
