# device-script: consent_prompt
# version: 2
# contract: consent_prompt.contract.json
# Asks the person at the device whether a support session may start. Runs as that user, in their own logon
# session, started by the scheduled task RemoteSupport-ConsentPrompt (which set_support_session.ps1 registers with
# LogonType Interactive): WinRM commands run in session 0, where no one sees a window. Who asks and why are read
# from the registry, never from a command line: first the account Windows authenticated for the request (which the
# requester cannot choose), then, marked as the requester's own words, the name and reason they gave. The answer and the user's name go to
# HKLM:\SOFTWARE\RemoteSupport\Consent (the one key this user may write), then event 1010 tells the SYSTEM task
# RemoteSupport-ApplyConsent to apply it. See docs/consent-route.md.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout

$consentSubkey = $consentKey.Substring('HKLM:\'.Length)
# The one limit for the requester's free text, in the record and in the window alike (session_state's
# FREE_TEXT_MAX_CHARACTERS); the window cleans what it shows again, whoever wrote the registry.
$freeTextLimit = 300
$invisibleCharacters = '[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]'

# WScript.Shell.Popup buttons and answers (MessageBox values).
$yesNo = 4
$questionIcon = 32
$systemModal = 4096
$buttonYes = 6
$buttonNo = 7

# library: stamps

function Format-FreeText([string]$Text) {
    # As session_state.clean_free_text: control, format and line-separator characters become spaces, runs of white
    # space one space; then the one limit.
    $clean = (($Text -replace $invisibleCharacters, ' ') -replace '\s+', ' ').Trim()
    if ($clean.Length -gt $freeTextLimit) {
        $clean = $clean.Substring(0, $freeTextLimit)
    }
    return $clean
}

function Read-Values([string]$Path) {
    if (-not (Test-Path -LiteralPath $Path)) {
        return $null
    }
    return Get-Item -LiteralPath $Path
}

function Get-PromptText([string]$Account, [string]$RequestedBy, [string]$Reason, [bool]$Renewal, [int]$SecondsLeft) {
    # The lab's emulation words it identically (consent_prompt.prompt_text); tests read the window's text.
    $what = 'to start a remote support session on this computer'
    $lapse = 'the request lapses and nothing is allowed.'
    if ($Renewal) {
        $what = 'to extend the remote support session running on this computer'
        $lapse = 'the session is not extended and ends when its current authorization expires. No ends it now.'
    }
    return "$Account asks $what.`r`n`r`n" +
        "On behalf of (as given by the requester): $RequestedBy`r`n" +
        "Reason (as given by the requester): $Reason`r`n`r`n" +
        "Do you allow it? Without an answer within $SecondsLeft seconds $lapse"
}

$result = [ordered]@{
    script_version = 2
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

$waiting = $false
if ($null -ne $session) {
    $state = [string]$session.GetValue('State')
    # A first request, or a renewal of the authorized session (its grant holds while the user decides).
    $waiting = $state -eq 'pending_confirmation' -or ($state -eq 'authorized' -and $null -ne $session.GetValue('RenewalRequestedAt'))
}
if ($null -eq $request -or -not $waiting -or [string]$session.GetValue('Id') -ne $sessionId) {
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
        $account = Format-FreeText ([string]$request.GetValue('Account'))
        $requestedBy = Format-FreeText ([string]$request.GetValue('RequestedBy'))
        $reason = Format-FreeText ([string]$request.GetValue('Reason'))
        $renewal = [int]$request.GetValue('Renewal') -eq 1
        $text = Get-PromptText $account $requestedBy $reason $renewal $secondsLeft
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
                $message = "Support session ${sessionId}: consent answered ($answer) by $($me.Name) at $answeredAt. " +
                    "Requested by $account on behalf of $requestedBy. Reason: $reason"
                Write-EventLog -LogName Application -Source $eventSource -EventId $consentAnsweredEventId -EntryType Information -Message ($message.Substring(0, [Math]::Min($message.Length, 31000)))
            }
        }
    }
}

ConvertTo-Json -InputObject $result -Compress -Depth 4
