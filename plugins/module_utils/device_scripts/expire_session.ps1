# device-script: expire_session
# version: 2
# contract: expire_session.contract.json
# Lapses the support session's authorization when its expires_at has come, on the device itself, whether or not a
# controller ever returns. Runs as SYSTEM, started by the one-shot scheduled task RemoteSupport-ExpireSession at
# expires_at (or as soon as the device can, when it was off or asleep then). The record decides, not the task:
# a session renewed meanwhile has a later expires_at and is left alone. A renewal still waiting for the client
# lapses with the grant (its prompt closes). Compare-and-set under the same mutex as
# set_support_session.ps1. Event 1004. See docs/consent-route.md.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: audit_event
# A renewal still waiting when the grant lapses lapses with it: its prompt closes and its keys go.
$consentTasks = @($consentPromptTask, $applyConsentTask)
$renewalValues = @('RenewalRequestedBy', 'RenewalReason', 'RenewalRequestedAt')
$timer = 'timer'

# library: stamps

# library: session_lock

# library: session_change

# library: task_removal

$result = New-SessionChangeResult 2

$lock = Enter-SessionLock
try {
    $nowText = Set-ResultTime $result
    $now = ConvertFrom-Stamp $nowText
    $key = $null
    if (Test-Path -LiteralPath $sessionKey) {
        $key = Get-Item -LiteralPath $sessionKey
    }
    if ($null -ne $key -and $null -ne $key.GetValue('Id')) {
        $sessionId = [string]$key.GetValue('Id')
        $state = [string]$key.GetValue('State')
        $version = [int]$key.GetValue('Version')
        $expiresAt = ConvertFrom-Stamp ([string]$key.GetValue('ExpiresAt'))
        if ($state -eq 'authorized' -and $null -ne $expiresAt -and $expiresAt -le $now) {
            # Only what the transition changes is written; the rest of the record stays as it is.
            $version = $version + 1
            $state = 'expired'
            Set-ItemProperty -LiteralPath $sessionKey -Name 'State' -Value $state -Type String
            Set-ItemProperty -LiteralPath $sessionKey -Name 'ChangedBy' -Value $timer -Type String
            Set-ItemProperty -LiteralPath $sessionKey -Name 'ChangedAt' -Value $nowText -Type String
            Set-ItemProperty -LiteralPath $sessionKey -Name 'Version' -Value $version -Type DWord
            foreach ($name in $renewalValues) {
                Remove-ItemProperty -LiteralPath $sessionKey -Name $name -ErrorAction SilentlyContinue
            }
            $request = $null
            if (Test-Path -LiteralPath $consentRequestKey) {
                $request = Get-Item -LiteralPath $consentRequestKey
            }
            if ($null -ne $request -and [string]$request.GetValue('SessionId') -eq $sessionId) {
                foreach ($task in $consentTasks) {
                    Remove-Task $task
                }
                foreach ($path in @($consentKey, $consentRequestKey)) {
                    if (Test-Path -LiteralPath $path) {
                        Remove-Item -LiteralPath $path -Recurse -Force
                    }
                }
            }
            # Remote control ends with the grant, as deauthorizing ends it; its task waits for this mutex.
            if ($null -ne (Get-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\' -ErrorAction SilentlyContinue)) {
                Start-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\'
            }
            $reason = [string]$key.GetValue('Reason')
            if (-not $reason) {
                $reason = '(none given)'
            }
            $message = 'Support session {0}: expired by {1} at {2}. Requested by {3}. Reason: {4}' -f $sessionId, $timer, $nowText, ([string]$key.GetValue('RequestedBy')), $reason
            Write-Audit $sessionExpiredEventId 'Information' (Limit-EventMessage $message)
            $result.outcome = 'expired'
        }
        $result.session_id = $sessionId
        $result.state = $state
        $result.version = $version
    }
}
finally {
    $lock.ReleaseMutex()
    $lock.Dispose()
}

ConvertTo-Json -InputObject $result -Compress -Depth 4
