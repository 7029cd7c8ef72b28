# device-script: apply_consent
# version: 2
# contract: apply_consent.contract.json
# Applies the client's answer to a pending support session, or its time-out. Runs as SYSTEM, started by the
# scheduled task RemoteSupport-ApplyConsent when the prompt reports an answer (event 1010) and once at the
# confirmation deadline; no controller is needed. Changes the record by compare-and-set under the same mutex as
# set_support_session.ps1, so it never overwrites a change a specialist made meanwhile. See docs/consent-route.md.
#
# A pending request (state pending_confirmation):
# accept (answered by the deadline) -> authorized: authorized_at = now, expires_at = now + the record's ttl_seconds,
#                                      confirmed_by = the prompted user; the expiry task is armed. Event 1001.
# deny (answered by the deadline)   -> denied, confirmed_by = the prompted user. Event 1002.
# no answer and the deadline passed -> timed_out, changed by "timer". Event 1003.
# A renewal waiting on an authorized session (renewal_requested_at set; the grant holds meanwhile):
# accept -> authorized again from now (the renewal's request becomes the authorization's). Event 1007.
# deny   -> denied at once, and what hangs on the authorization ends now: the remote-control end task is started
#           (it removes the grant and closes shadow connections); transfers stop at their next chunk. Event 1002.
# no answer by the deadline -> the renewal is dropped, the authorization runs out at its own expires_at (its
#           expiry task stays armed). Event 1003.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: audit_event

$timer = 'timer'
$powershellExe = Join-Path -Path $env:SystemRoot -ChildPath 'System32\WindowsPowerShell\v1.0\powershell.exe'

# library: stamps

# library: session_lock

# library: session_change

function Read-Key([string]$Path) {
    if (-not (Test-Path -LiteralPath $Path)) {
        return $null
    }
    return Get-Item -LiteralPath $Path
}

# library: session_record

# library: task_removal

function Register-ExpiryTask([DateTime]$ExpiresAt) {
    # As set_support_session.ps1 arms it: SYSTEM, once at expires_at (a UTC start boundary), run when available.
    $path = Join-Path -Path $scriptFolder -ChildPath 'expire_session.ps1'
    $arguments = '-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -File "{0}"' -f $path
    $action = New-ScheduledTaskAction -Execute $powershellExe -Argument $arguments
    $trigger = New-ScheduledTaskTrigger -Once -At ($ExpiresAt.ToLocalTime())
    $trigger.StartBoundary = Format-Stamp $ExpiresAt
    $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    $settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew -ExecutionTimeLimit (New-TimeSpan -Minutes 5)
    Register-ScheduledTask -TaskName $expireSessionTask -TaskPath '\' -Action $action -Trigger $trigger -Principal $principal -Settings $settings -Force | Out-Null
}

function Write-TransitionAudit([int]$EventId, [string]$What, $Record, [string]$Who) {
    # The same wording as the controller's entries: who, what, when and the session id.
    $reason = [string]$Record.reason
    if (-not $reason) {
        $reason = '(none given)'
    }
    $message = 'Support session {0}: {1} by {2} at {3}. Requested by {4}. Reason: {5}' -f $Record.id, $What, $Who, $Record.changed_at, $Record.requested_by, $reason
    $entryType = 'Information'
    if ($What -notmatch 'authorized$') {
        $entryType = 'Warning'
    }
    Write-Audit $EventId $entryType (Limit-EventMessage $message)
}

$result = New-SessionChangeResult 2

$lock = Enter-SessionLock
try {
    $nowText = Set-ResultTime $result
    $now = ConvertFrom-Stamp $nowText
    $record = Read-SessionRecord
    $request = Read-Key $consentRequestKey
    $renewal = $null -ne $record -and $record.state -eq 'authorized' -and $null -ne $record.renewal_requested_at
    $pending = $null -ne $record -and ($record.state -eq 'pending_confirmation' -or $renewal) -and $null -ne $request -and [string]$request.GetValue('SessionId') -eq $record.id
    if ($pending) {
        if ($renewal) {
            # As set_support_session.ps1 set it: never past the expires_at of the authorization it would extend.
            $deadline = (ConvertFrom-Stamp $record.renewal_requested_at).AddSeconds($record.confirmation_timeout_seconds)
            $expiresAt = ConvertFrom-Stamp $record.expires_at
            if ($expiresAt -lt $deadline) {
                $deadline = $expiresAt
            }
        }
        else {
            $deadline = (ConvertFrom-Stamp $record.requested_at).AddSeconds($record.confirmation_timeout_seconds)
        }
        # Only the prompted user may write the Consent key, so the name SYSTEM recorded for the request is who
        # answered; the name the prompt wrote is not trusted for it.
        $promptedUser = [string]$request.GetValue('UserName')
        $answer = $null
        $consent = Read-Key $consentKey
        if ($null -ne $consent -and [string]$consent.GetValue('SessionId') -eq $record.id) {
            $given = [string]$consent.GetValue('Answer')
            $answeredAt = ConvertFrom-Stamp ([string]$consent.GetValue('AnsweredAt'))
            # An answer given after the deadline does not count: by then the request had timed out.
            if (@('accept', 'deny') -contains $given -and $null -ne $answeredAt -and $answeredAt -le $deadline) {
                $answer = $given.ToLowerInvariant()
            }
        }

        $eventId = $null
        $who = $null
        $what = $null
        if ($renewal -and $null -ne $answer) {
            # Answered: the renewal's request is now the session's.
            $record.requested_by = $record.renewal_requested_by
            $record.reason = $record.renewal_reason
            $record.requested_at = $record.renewal_requested_at
        }
        if ($answer -eq 'accept') {
            $record.state = 'authorized'
            $record.confirmed_by = $promptedUser
            $record.authorized_at = $nowText
            $record.expires_at = Format-Stamp ($now.AddSeconds($record.ttl_seconds))
            $who = $promptedUser
            $eventId = $sessionAuthorizedEventId
        }
        elseif ($answer -eq 'deny') {
            $record.state = 'denied'
            $record.confirmed_by = $promptedUser
            $who = $promptedUser
            $eventId = $sessionDeniedEventId
        }
        elseif ($now -ge $deadline) {
            if (-not $renewal) {
                $record.state = 'timed_out'
            }
            $what = 'timed out'
            $who = $timer
            $eventId = $sessionTimedOutEventId
        }

        if ($null -ne $eventId) {
            if ($null -eq $what) {
                $what = $record.state -replace '_', ' '
            }
            if ($renewal) {
                if ($eventId -eq $sessionAuthorizedEventId) {
                    $eventId = $sessionRenewedEventId
                }
                $what = 'renewal ' + $what
                $record.renewal_requested_by = $null
                $record.renewal_reason = $null
                $record.renewal_requested_at = $null
            }
            $record.version = $record.version + 1
            $record.changed_by = $who
            $record.changed_at = $nowText
            Write-SessionRecord $record
            if ($record.state -eq 'authorized') {
                Register-ExpiryTask (ConvertFrom-Stamp $record.expires_at)
            }
            if ($record.state -eq 'denied' -and $null -ne (Get-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\' -ErrorAction SilentlyContinue)) {
                # A denied renewal ends the session now, not at the old expires_at: the end task waits for this
                # script's mutex, then reads the record just written.
                Start-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\'
            }
            # The question is settled: close a window still open and take back the user's grant on the Consent key.
            Remove-Task $consentPromptTask
            foreach ($key in @($consentKey, $consentRequestKey)) {
                if (Test-Path -LiteralPath $key) {
                    Remove-Item -LiteralPath $key -Recurse -Force
                }
            }
            Write-TransitionAudit $eventId $what $record $who
            $result.outcome = $record.state
            if ($renewal) {
                $result.outcome = 'renewal_' + ($what -replace '^renewal ', '' -replace ' ', '_')
            }
        }
    }
    if ($null -ne $record) {
        $result.session_id = $record.id
        $result.state = $record.state
        $result.version = $record.version
    }
}
finally {
    $lock.ReleaseMutex()
    $lock.Dispose()
}

ConvertTo-Json -InputObject $result -Compress -Depth 4
