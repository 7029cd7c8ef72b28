# device-script: get_support_session
# version: 2
# contract: get_support_session.contract.json
# Reads the support-session record (HKLM:\SOFTWARE\RemoteSupport\Session), the support policy
# (HKLM:\SOFTWARE\RemoteSupport\Policy, defaults where absent) and the user logged on at the console. Changes nothing.
# The registry layout is described in docs/consent-route.md.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: stamps
# library: interactive_user
# library: session_lock

function Get-NumberValue($Key, [string]$Name) {
    # A value that is absent or not a whole number counts as not set.
    $raw = $Key.GetValue($Name)
    if ($null -eq $raw) {
        return $null
    }
    $number = 0
    if ([int]::TryParse([string]$raw, [ref]$number)) {
        return $number
    }
    return $null
}

# library: session_record

function Read-Policy {
    # No Policy key: the defaults (confirmation required, 300 s to answer, one hour of authorization).
    $policy = [ordered]@{
        confirmation_required = $true
        confirmation_timeout_seconds = 300
        session_ttl_seconds = 3600
        source = 'default'
    }
    if (-not (Test-Path -LiteralPath $policyKey)) {
        return $policy
    }
    $policy.source = 'device'
    $key = Get-Item -LiteralPath $policyKey
    $required = Get-NumberValue $key 'ConfirmationRequired'
    if ($null -ne $required) {
        $policy.confirmation_required = ($required -ne 0)
    }
    # A zero or negative time would make every request time out or expire at once: such a value keeps the default.
    $timeout = Get-NumberValue $key 'ConfirmationTimeoutSeconds'
    if ($null -ne $timeout -and $timeout -ge 1) {
        $policy.confirmation_timeout_seconds = $timeout
    }
    $ttl = Get-NumberValue $key 'SessionTtlSeconds'
    if ($null -ne $ttl -and $ttl -ge 1) {
        $policy.session_ttl_seconds = $ttl
    }
    return $policy
}

$lock = Enter-SessionLock
try {
    $record = Read-SessionRecord
    $deviceTime = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
}
finally {
    $lock.ReleaseMutex()
    $lock.Dispose()
}

$result = [ordered]@{
    script_version = 2
    device_time = $deviceTime
    policy = Read-Policy
    interactive_user = Get-InteractiveUser $false
    session = $record
}
ConvertTo-Json -InputObject $result -Compress -Depth 5
