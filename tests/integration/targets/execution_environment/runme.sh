#!/usr/bin/env bash
# An execution environment built with the collection gets pywinrm and the Kerberos packages: ansible-builder's
# introspection (the step an EE build runs on every installed collection) reads them from meta/execution-environment.yml,
# and `ansible-builder create` on an EE definition that installs the collection produces a build context carrying them.
set -eux -o pipefail
work=$(mktemp -d "${TMPDIR:-/tmp}/ee.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The collection under test, where Ansible finds it (ansible-test puts it on ANSIBLE_COLLECTIONS_PATH).
collection=$(ansible-galaxy collection list remote_support.windows --format json \
    | python3 -c 'import json, sys; paths = json.load(sys.stdin); print(next(iter(paths)))')/remote_support/windows
test -f "$collection/galaxy.yml"

# 1. Introspection, as the EE build runs it over the collections it installed.
mkdir -p "$work/collections/ansible_collections/remote_support"
cp -r "$collection" "$work/collections/ansible_collections/remote_support/windows"
ansible-builder introspect --sanitize "$work/collections" > "$work/introspect.txt"
cat "$work/introspect.txt"
sed -n '/^python:/,/^system:/p' "$work/introspect.txt" \
    | grep -qF "pywinrm[kerberos,credssp]>=0.5,<0.6  # from collection remote_support.windows"
for package in krb5-user libkrb5-dev krb5-workstation krb5-libs; do
    sed -n '/^system:/,$p' "$work/introspect.txt" | grep -q "^- '$package .*# from collection remote_support.windows'"
done

# 2. create: an EE definition installing the built collection; the context has the collection and its files.
(cd "$collection" && ansible-galaxy collection build --force --output-path "$work" >/dev/null)
tarball=$(ls "$work"/remote_support-windows-*.tar.gz)
cp "$tarball" "$work/remote_support-windows.tar.gz"
cat > "$work/execution-environment.yml" <<YAML
---
version: 3
images:
  base_image:
    name: quay.io/ansible/awx-ee:latest
dependencies:
  ansible_core:
    package_pip: ansible-core>=2.16
  ansible_runner:
    package_pip: ansible-runner
  galaxy:
    collections:
      - name: remote_support-windows.tar.gz
        type: file
additional_build_files:
  - src: remote_support-windows.tar.gz
    dest: collections
YAML
(cd "$work" && ansible-builder create --file execution-environment.yml --context context --output-filename Containerfile -v 3) | tee "$work/create.txt"
test -f "$work/context/Containerfile"
grep -q "scripts/introspect.py introspect" "$work/context/Containerfile"  # reads meta/execution-environment.yml
tar -xzf "$work/context/_build/collections/remote_support-windows.tar.gz" -O meta/execution-environment.yml \
    | grep -q "python: requirements.txt"
tar -xzf "$work/context/_build/collections/remote_support-windows.tar.gz" -O requirements.txt | grep -q "^pywinrm"
tar -xzf "$work/context/_build/collections/remote_support-windows.tar.gz" -O bindep.txt | grep -q "^krb5-user"
echo "execution environment: pywinrm and the Kerberos packages reach the build"
