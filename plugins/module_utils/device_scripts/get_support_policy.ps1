# device-script: get_support_policy
# version: 1
# contract: get_support_policy.contract.json
# Reads the support policy as stored: every value under HKLM:\SOFTWARE\RemoteSupport\Policy with its registry
# kind, and the Remote Desktop shadow policy (HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services,
# value Shadow). Changes nothing. The controller applies the defaults and the rules (docs/support-policy.md), so
# this script reports what is there, not what it means.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: stamps
# library: registry_values

$stored = Read-StoredPolicy
$result = [ordered]@{
    script_version = 1
    device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
    policy_key_exists = $stored.policy_key_exists
    values = $stored.values
    shadow = $stored.shadow
}
ConvertTo-Json -InputObject $result -Compress -Depth 6
