# device-script: get_support_session
# version: 3
# contract: get_support_session.contract.json
# Reads the support-session record (HKLM:\SOFTWARE\RemoteSupport\Session), the support policy
# (HKLM:\SOFTWARE\RemoteSupport\Policy, defaults where absent) and the user logged on at the console. Changes nothing.
# The registry layout is described in docs/consent-route.md.
# With the input `wait` ({session_id, version, seconds, every_seconds}) it first waits on the device while the record
# is still that version of that session: it re-reads it every every_seconds, and answers as soon as it changed (the
# client answered, another controller wrote) or after `seconds`. So a controller awaits the client's answer in one
# command instead of one command per poll. With `facts: true` it also answers get_device_facts' result (`facts`), read
# after the wait: a session gate reads the device in one command.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: stamps
# library: interactive_user
# library: session_lock
# library: agent_checkin
# library: device_facts

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

function Read-RecordAndTime {
    $lock = Enter-SessionLock
    try {
        return @{ record = Read-SessionRecord; time = [DateTime]::UtcNow.ToString($stampFormat, $invariant) }
    }
    finally {
        $lock.ReleaseMutex()
        $lock.Dispose()
    }
}

$wait = $null
if ($null -ne $InputObject -and $null -ne $InputObject.PSObject.Properties['wait']) {
    $wait = $InputObject.wait
}
$read = Read-RecordAndTime
if ($null -ne $wait) {
    # A stopwatch, not the wall clock: a clock set back or forward while waiting neither ends nor stretches the wait.
    $waited = [System.Diagnostics.Stopwatch]::StartNew()
    while ($null -ne $read.record -and [string]$read.record.id -eq [string]$wait.session_id -and
           [int]$read.record.version -eq [int]$wait.version -and $waited.Elapsed.TotalSeconds -lt [int]$wait.seconds) {
        Start-Sleep -Milliseconds ([int]([double]$wait.every_seconds * 1000))
        $read = Read-RecordAndTime
    }
}
$record = $read.record
$deviceTime = $read.time

$result = [ordered]@{
    script_version = 3
    device_time = $deviceTime
    policy = Read-Policy
    interactive_user = Get-InteractiveUser $false
    session = $record
}
if ($null -ne $InputObject -and $null -ne $InputObject.PSObject.Properties['facts'] -and $InputObject.facts -eq $true) {
    $result.facts = Get-DeviceFacts
}
ConvertTo-Json -InputObject $result -Compress -Depth 5
