# device-script: get_device_facts
# version: 1
# contract: get_device_facts.contract.json
# Gathers the six facts a support session shows (name, serial number, last agent check-in, operating system,
# model, device type) plus the device's own clock, so the controller can tell active from idle by the device's time.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: agent_checkin
# library: device_facts

ConvertTo-Json -InputObject (Get-DeviceFacts) -Compress -Depth 4
