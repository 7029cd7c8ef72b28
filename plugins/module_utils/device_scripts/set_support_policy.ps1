# device-script: set_support_policy
# version: 1
# contract: set_support_policy.contract.json
# Writes support-policy values under HKLM:\SOFTWARE\RemoteSupport\Policy (only the names the contract lists, each
# with the kind it gives), optionally the Remote Desktop shadow policy value, stamps who changed the policy and
# when (ChangedBy, ChangedAt), writes one audit entry, and answers what is stored afterwards (the same shape as
# get_support_policy). The controller sends only what differs, so a value is written only when it changes.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: stamps
# library: audit_event

# The policy values this script may write, and the one kind each is kept as (docs/support-policy.md).
$valueKinds = @{
    ConfirmationRequired = 'DWord'
    ConfirmationTimeoutSeconds = 'DWord'
    SessionTtlSeconds = 'DWord'
    RemoteControlMode = 'String'
    FileTransferAllowedRoots = 'MultiString'
    FileTransferMaxSizeBytes = 'QWord'
}

# library: registry_values

function Assert-Input($Request) {
    # The controller checks its input against the contract; these checks keep a caller with a bug from writing a
    # value every reader would misread.
    foreach ($entry in @($Request.values)) {
        $name = [string]$entry.name
        if (-not $valueKinds.ContainsKey($name)) {
            throw ("'{0}' is not a support-policy value this script writes." -f $name)
        }
        if ([string]$entry.kind -ne $valueKinds[$name]) {
            throw ("{0} is kept as {1}, not {2}." -f $name, $valueKinds[$name], $entry.kind)
        }
    }
    if ($null -ne $Request.shadow) {
        $shadowData = [int]$Request.shadow.data
        if ($shadowData -lt 0 -or $shadowData -gt 4) {
            throw ('The Shadow policy value is 0 to 4, not {0}.' -f $shadowData)
        }
    }
    if (-not [string]$Request.audit.message) {
        throw 'audit needs a message.'
    }
}

function Write-PolicyValue([string]$Path, [string]$Name, [string]$Kind, $Data) {
    # Registry.SetValue with an explicit kind creates the key when missing and replaces a value written by hand
    # with another kind, so every reader finds the kind it expects. (It also writes an empty REG_MULTI_SZ, which
    # New-ItemProperty refuses.)
    $keyName = $Path -replace '^HKLM:\\', 'HKEY_LOCAL_MACHINE\'
    if ($Kind -eq 'DWord') {
        [Microsoft.Win32.Registry]::SetValue($keyName, $Name, [int]$Data, [Microsoft.Win32.RegistryValueKind]::DWord)
    }
    elseif ($Kind -eq 'QWord') {
        [Microsoft.Win32.Registry]::SetValue($keyName, $Name, [long]$Data, [Microsoft.Win32.RegistryValueKind]::QWord)
    }
    elseif ($Kind -eq 'MultiString') {
        [Microsoft.Win32.Registry]::SetValue($keyName, $Name, [string[]]@($Data), [Microsoft.Win32.RegistryValueKind]::MultiString)
    }
    else {
        [Microsoft.Win32.Registry]::SetValue($keyName, $Name, [string]$Data, [Microsoft.Win32.RegistryValueKind]::String)
    }
}

Assert-Input $InputObject
$entries = @($InputObject.values)
$writes = $entries.Count
if ($null -ne $InputObject.shadow) {
    $writes = $writes + 1
}
if ($writes -gt 0) {
    foreach ($entry in $entries) {
        Write-PolicyValue $policyKey ([string]$entry.name) ([string]$entry.kind) $entry.data
    }
    if ($null -ne $InputObject.shadow) {
        Write-PolicyValue $shadowKey 'Shadow' 'DWord' ([int]$InputObject.shadow.data)
    }
    $now = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
    Write-PolicyValue $policyKey 'ChangedBy' 'String' ([string]$InputObject.changed_by)
    Write-PolicyValue $policyKey 'ChangedAt' 'String' $now
    Write-Audit ([int]$InputObject.audit.event_id) ([string]$InputObject.audit.entry_type) ([string]$InputObject.audit.message)
}

$stored = Read-StoredPolicy
$result = [ordered]@{
    script_version = 1
    device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
    written = $writes
    policy_key_exists = $stored.policy_key_exists
    values = $stored.values
    shadow = $stored.shadow
}
ConvertTo-Json -InputObject $result -Compress -Depth 6
