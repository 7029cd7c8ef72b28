"""Emulations of the collection's device scripts (plugins/module_utils/device_scripts/NAME.ps1).

Each module here is named after the script it stands in for and provides:

- `VERSION`: the script version (its `# version: N` header line) the module emulates;
- `run(device, script_input) -> dict`: what the script does to the device and the JSON object it writes.

The PowerShell emulation (emulation/powershell.py) checks the input and the result against the script's written
contract, so an emulation that drifts from its contract fails loudly instead of passing tests it should not.
"""

from __future__ import annotations


class DeviceScriptError(Exception):
    """The script failed on the device. The message is what the bootstrap writes to stderr (the exception's
    Message in PowerShell), so it must read like the error Windows would raise."""
