"""Stand-in for get-pip.py, used by ansible-test when it bootstraps pip in the virtual environments it creates.

ansible-test downloads get-pip.py from a host outside the package registries; this machine reaches only the
registries. This script does the same job offline: pip from the interpreter's own ensurepip wheel, then the
requested pip version and packages from the package index. scripts/test puts it where ansible-test looks for its
cached copy.
"""

import ensurepip
import os
import subprocess
import sys

environment = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
# ensurepip blanks pip's configuration for its own run (PIP_CONFIG_FILE=/dev/null); the install below must see the
# machine's index and certificate settings again.
os.environ.clear()
os.environ.update(environment)
arguments = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *arguments]))
