"""Writes a copy of the lab's inventory without ansible_user and ansible_password, as an AWX inventory whose
credentials come from a machine credential; prints the user and password the lab's devices accept."""
import json
import sys

import yaml

source, target, manifest = sys.argv[1:4]
inventory = yaml.safe_load(open(source, encoding="utf-8"))


def strip(group):
    for host in (group.get("hosts") or {}).values():
        host.pop("ansible_user", None)
        host.pop("ansible_password", None)
    for child in (group.get("children") or {}).values():
        strip(child)


strip(inventory["all"])
with open(target, "w", encoding="utf-8") as handle:
    yaml.safe_dump(inventory, handle)
devices = json.load(open(manifest, encoding="utf-8"))["devices"]
credentials = {(d["credentials"]["username"], d["credentials"]["password"]) for d in devices}
assert len(credentials) == 1, "a healthy lab fleet shares one account"
print(json.dumps(dict(zip(("user", "password"), credentials.pop()))))
