# device-script: stop_remote_control
# version: 2
# contract: stop_remote_control.contract.json
# Ends remote control: closes open shadow connections to the granted session, takes the specialist's account off the
# RDP-Tcp listener and restores the Shadow policy value, each only as start_remote_control.ps1 changed it (recorded
# under HKLM:\SOFTWARE\RemoteSupport\RemoteControlUndo), and removes the grant. See docs/remote-control.md.
#
# Two callers:
# - the controller (remote_control, state stopped), with input: ends the grant whatever the session's state;
# - the one-shot task RemoteSupport-EndRemoteControl, as SYSTEM at the grant's expires_at, with no input
#   (Task Scheduler starts the script with -File): ends the grant only when its authorization is over, so a task
#   that fires early (a device clock set back and forth) never takes a valid grant away. set_support_session (when
#   deauthorizing) and expire_session may start the task, or run this script, to end remote control at once.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: audit_event

# library: stamps

# library: session_lock

# library: remote_control_grant

# --- what the caller asks -------------------------------------------------------------------------------------------
$byTask = ($null -eq $InputObject)
$checkOnly = $false
$endedBy = 'device'
$reason = 'stopped'
if (-not $byTask) {
    $checkOnly = [bool]$InputObject.check_only
    $endedBy = [string]$InputObject.ended_by
    $reason = [string]$InputObject.reason
    if (@('stopped', 'deauthorized', 'expired') -notcontains $reason) {
        throw ("reason '{0}' is not stopped, deauthorized or expired." -f $reason)
    }
}

$result = [ordered]@{
    script_version = 2
    device_time = $null
    outcome = 'nothing_to_do'
    applied = $false
    changed = $false
    reason = $null
    grant = $null
    shadow_connections_ended = 0
    listener_entry_removed = $false
    shadow_policy_restored = $false
}

$lock = Enter-SessionLock
try {
    $nowText = Set-ResultTime $result
    $now = ConvertFrom-Stamp $nowText
    $grant = Read-Grant $false
    $result.grant = $grant
    $hasUndo = Test-Path -LiteralPath $remoteControlUndoKey
    $task = Get-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\' -ErrorAction SilentlyContinue

    $end = ($null -ne $grant) -or $hasUndo
    if ($byTask -and $end) {
        # The record decides, not the task: only an authorization that is over ends the grant.
        $storedId = [string](Get-RegistryValue $sessionKey 'Id')
        $storedState = [string](Get-RegistryValue $sessionKey 'State')
        $sessionExpires = ConvertFrom-Stamp ([string](Get-RegistryValue $sessionKey 'ExpiresAt'))
        $grantExpires = $null
        if ($null -ne $grant) {
            $grantExpires = ConvertFrom-Stamp $grant.expires_at
        }
        $expired = ($null -ne $grantExpires -and $grantExpires -le $now) -or ($null -ne $sessionExpires -and $sessionExpires -le $now)
        $sameSession = ($null -ne $grant -and $storedId -eq $grant.support_session_id)
        if ($sameSession -and $storedState -eq 'authorized' -and -not $expired) {
            $end = $false
            $result.outcome = 'kept'
        }
        elseif ($sameSession -and $storedState -eq 'deauthorized') {
            $reason = 'deauthorized'
        }
        elseif ($sameSession -and $storedState -eq 'denied') {
            # The client refused a renewal: the session ended at once, before its expires_at.
            $reason = 'denied'
        }
        elseif ($sameSession -and ($expired -or $storedState -eq 'expired')) {
            $reason = 'expired'
        }
        else {
            $reason = 'authorization_ended'
        }
    }

    if ($end) {
        $result.outcome = 'stopped'
        $result.reason = $reason
        $result.changed = $true
    }
    elseif (-not $byTask -and $null -ne $task) {
        # A task left from a grant that something else removed: nothing to end, but it goes too.
        $result.changed = $true
    }

    if ($result.changed -and -not $checkOnly) {
        $removed = Remove-Grant $grant
        foreach ($field in $removed.Keys) {
            $result[$field] = $removed[$field]
        }
        if (-not $byTask -and $null -ne $task) {
            # The task running this script (no input) stays registered; it has nothing left to do when it fires.
            Unregister-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\' -Confirm:$false
        }
        if ($end) {
            $what = 'a grant that was not recorded in full'
            $sessionId = '(unknown)'
            if ($null -ne $grant) {
                $what = 'remote control ({0}) of the session of {1} (session {2}) by {3}' -f $grant.mode, $grant.user, $grant.interactive_session_id, $grant.account
                $sessionId = $grant.support_session_id
            }
            $eventId = $remoteControlStoppedEventId
            if ($byTask) {
                $eventId = $remoteControlEndedByDeviceEventId
            }
            $message = 'Support session {0}: {1} ended by {2} at {3} ({4}).' -f $sessionId, $what, $endedBy, $nowText, ($reason.Replace('_', ' '))
            Write-Audit $eventId 'Information' $message
        }
        $result.applied = $true
    }
}
finally {
    $lock.ReleaseMutex()
    $lock.Dispose()
}

ConvertTo-Json -InputObject $result -Compress -Depth 5
