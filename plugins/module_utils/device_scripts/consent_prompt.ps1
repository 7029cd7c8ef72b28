# device-script: consent_prompt
# version: 1
# contract: consent_prompt.contract.json
# Asks the person at the device whether a support session may start. Runs as that user, in their own logon
# session, started by the scheduled task RemoteSupport-ConsentPrompt (which set_support_session.ps1 registers with
# LogonType Interactive): WinRM commands run in session 0, where no one sees a window. Who asks and why are read
# from the registry, never from a command line. The answer and the user's name go to
# HKLM:\SOFTWARE\RemoteSupport\Consent (the one key this user may write), then event 1010 tells the SYSTEM task
# RemoteSupport-ApplyConsent to apply it. See docs/consent-route.md.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

$sessionKey = 'HKLM:\SOFTWARE\RemoteSupport\Session'
$consentRequestKey = 'HKLM:\SOFTWARE\RemoteSupport\ConsentRequest'
$consentSubkey = 'SOFTWARE\RemoteSupport\Consent'
$eventSource = 'RemoteSupport.Windows'
$consentAnsweredEventId = 1010
# The most of the reason the window shows; the event log keeps the whole of it.
$reasonShown = 600

# WScript.Shell.Popup buttons and answers (MessageBox values).
$yesNo = 4
$questionIcon = 32
$systemModal = 4096
$buttonYes = 6
$buttonNo = 7

# library: stamps

function Read-Values([string]$Path) {
    if (-not (Test-Path -LiteralPath $Path)) {
        return $null
    }
    return Get-Item -LiteralPath $Path
}

$result = [ordered]@{
    script_version = 1
    device_time = Format-Stamp ([DateTime]::UtcNow)
    session_id = $null
    outcome = $null
    answer = $null
    answered_by = $null
}

if ([System.Diagnostics.Process]::GetCurrentProcess().SessionId -eq 0) {
    throw 'consent_prompt.ps1 runs in session 0, where no one can see a prompt. The scheduled task RemoteSupport-ConsentPrompt starts it in the interactive user''s session.'
}
$me = [System.Security.Principal.WindowsIdentity]::GetCurrent()

$request = Read-Values $consentRequestKey
$session = Read-Values $sessionKey
$sessionId = $null
if ($null -ne $request) {
    $sessionId = [string]$request.GetValue('SessionId')
    $result.session_id = $sessionId
}

if ($null -eq $request -or $null -eq $session -or [string]$session.GetValue('State') -ne 'pending_confirmation' -or [string]$session.GetValue('Id') -ne $sessionId) {
    # Withdrawn, answered or replaced before this task got to run.
    $result.outcome = 'no_pending_request'
}
elseif ($me.User.Value -ne [string]$request.GetValue('UserSid')) {
    $result.outcome = 'not_the_prompted_user'
}
else {
    $styles = [System.Globalization.DateTimeStyles]'AssumeUniversal, AdjustToUniversal'
    $deadline = [DateTime]::ParseExact([string]$request.GetValue('Deadline'), $stampFormat, $invariant, $styles)
    $secondsLeft = [int][Math]::Floor(($deadline - [DateTime]::UtcNow).TotalSeconds)
    if ($secondsLeft -lt 1) {
        $result.outcome = 'deadline_passed'
    }
    else {
        $requestedBy = [string]$session.GetValue('RequestedBy')
        $reason = [string]$session.GetValue('Reason')
        if (-not $reason) {
            $reason = '(no reason given)'
        }
        elseif ($reason.Length -gt $reasonShown) {
            $reason = $reason.Substring(0, $reasonShown) + '...'
        }
        $text = "$requestedBy asks to start a remote support session on this computer.`r`n`r`n" +
            "Reason: $reason`r`n`r`n" +
            "Do you allow it? Without an answer within $secondsLeft seconds the request lapses and nothing is allowed."
        $shell = New-Object -ComObject WScript.Shell
        # Closes by itself when the deadline comes (-1); apply_consent also stops this task at the deadline, so a
        # window that outlives its timeout cannot grant anything late.
        $button = $shell.Popup($text, $secondsLeft, 'Remote support request', $yesNo + $questionIcon + $systemModal)
        $result.outcome = 'not_answered'
        $answer = $null
        if ($button -eq $buttonYes) {
            $answer = 'accept'
        }
        elseif ($button -eq $buttonNo) {
            $answer = 'deny'
        }
        if ($null -ne $answer) {
            $answeredAt = Format-Stamp ([DateTime]::UtcNow)
            # Opened with exactly the rights this user holds on the key (query and set values).
            $rights = [System.Security.AccessControl.RegistryRights]'QueryValues, SetValue'
            $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($consentSubkey, [Microsoft.Win32.RegistryKeyPermissionCheck]::ReadWriteSubTree, $rights)
            if ($null -eq $key) {
                # The request was withdrawn while the window was open.
                $result.outcome = 'withdrawn'
            }
            else {
                try {
                    # Answer last: a reader never sees an answer without the session and time it belongs to.
                    $key.SetValue('SessionId', $sessionId, [Microsoft.Win32.RegistryValueKind]::String)
                    $key.SetValue('AnsweredBy', $me.Name, [Microsoft.Win32.RegistryValueKind]::String)
                    $key.SetValue('AnsweredAt', $answeredAt, [Microsoft.Win32.RegistryValueKind]::String)
                    $key.SetValue('Answer', $answer, [Microsoft.Win32.RegistryValueKind]::String)
                }
                finally {
                    $key.Dispose()
                }
                $result.outcome = 'answered'
                $result.answer = $answer
                $result.answered_by = $me.Name
                $fullReason = [string]$session.GetValue('Reason')
                if (-not $fullReason) {
                    $fullReason = '(none given)'
                }
                $message = "Support session ${sessionId}: consent answered ($answer) by $($me.Name) at $answeredAt. " +
                    "Requested by $requestedBy. Reason: $fullReason"
                Write-EventLog -LogName Application -Source $eventSource -EventId $consentAnsweredEventId -EntryType Information -Message ($message.Substring(0, [Math]::Min($message.Length, 31000)))
            }
        }
    }
}

ConvertTo-Json -InputObject $result -Compress -Depth 4
