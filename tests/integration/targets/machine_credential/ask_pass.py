"""Runs the playbook twice the way AWX does, with -u USER --ask-pass and the password typed at the prompt: once as
ansible-playbook on a terminal, once through ansible-runner (what AWX runs). Checks every host's result and that the
password appears nowhere in the output, runner's artifacts or its events."""
import json
import os
import pathlib
import sys

import ansible_runner
import pexpect

inventory, work = sys.argv[1], pathlib.Path(sys.argv[2])
user, password = os.environ["LAB_USER"], os.environ.pop("LAB_PASSWORD")  # not handed on to what runs next
hostvars = json.loads(os.popen(f"ansible-inventory -i {inventory} --list").read())["_meta"]["hostvars"]
hosts = sorted(hostvars)
assert hosts, "the inventory has no hosts"
for variables in hostvars.values():  # the credential comes from the command line only
    assert not {"ansible_user", "ansible_password", "ansible_winrm_user", "ansible_winrm_password"} & set(variables)
playbook = str(pathlib.Path("test_machine_credential.yml").resolve())

# 1. ansible-playbook on a terminal, the password answered at its prompt.
child = pexpect.spawn("ansible-playbook", ["-i", inventory, "-u", user, "--ask-pass", playbook, "-v"],
                      encoding="utf-8", timeout=600, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
child.expect("SSH password:")
child.sendline(password)
child.expect(pexpect.EOF)
child.close()
output = child.before
print(output)
assert child.exitstatus == 0, f"ansible-playbook failed ({child.exitstatus})"
for host in hosts:
    assert f"{host}" in output
assert output.count("ok=2") == len(hosts), "every host ran the two tasks"
assert password not in output, "the password appears in ansible-playbook's output"

# 2. ansible-runner, as AWX runs a job template with a machine credential.
private = work / "runner"
(private / "project").mkdir(parents=True)
(private / "project" / "test_machine_credential.yml").write_text(pathlib.Path(playbook).read_text())
result = ansible_runner.run(
    private_data_dir=str(private), playbook="test_machine_credential.yml", inventory=os.path.abspath(inventory),
    cmdline=f"-u {user} --ask-pass", passwords={r"^SSH password:\s*?$": password}, quiet=True,
    envvars={"ANSIBLE_COLLECTIONS_PATH": os.environ.get("ANSIBLE_COLLECTIONS_PATH", "")})
assert result.status == "successful", f"ansible-runner: {result.status}, rc {result.rc}: {result.stdout.read()}"
ok = {}
for event in result.events:
    if event.get("event") == "runner_on_ok" and event["event_data"].get("task") == "Probe the device":
        ok[event["event_data"]["host"]] = event["event_data"]["res"]["status"]
    assert event.get("event") not in ("runner_on_failed", "runner_on_unreachable"), event
assert ok == {host: "active" for host in hosts}, ok
assert result.stats["ok"] and set(result.stats["ok"]) == set(hosts)
assert not result.stats["failures"] and not result.stats["dark"]

# env/passwords is runner's input (AWX writes it the same way); everything runner records is under artifacts/.
artifacts = [path for path in (private / "artifacts").rglob("*") if path.is_file()]
assert any(path.name == "stdout" for path in artifacts) and any(path.parent.name == "job_events" for path in artifacts)
leaks = [str(path) for path in artifacts if password.encode() in path.read_bytes()]
assert not leaks, f"the password appears in runner's artifacts: {leaks}"
assert not any(password in json.dumps(event) for event in result.events)
print(f"ansible-playbook and ansible-runner: {len(hosts)} hosts reached with -u/--ask-pass; the password is in none "
      f"of {len(artifacts)} artifact files or {len(list(result.events))} events")
