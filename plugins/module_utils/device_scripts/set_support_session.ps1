# device-script: set_support_session
# version: 2
# contract: set_support_session.contract.json
# Compare-and-set of the support-session record: writes `session` only when the stored record is still version
# `expected_version` (0: no record yet), then arms or withdraws the device-side tasks (the consent route, the
# expiry) and writes the audit entry. On a mismatch, or when a prompt is asked for and nobody is logged on, nothing
# changes and the stored record is returned. How the consent route works: docs/consent-route.md.
#
# Why a mutex: read-compare-write is three steps, and two writers (two specialists over WinRM, or a specialist and
# the SYSTEM tasks applying the client's answer or the expiry) may run them at the same moment in different
# processes. Every writer holds the machine-wide named mutex Global\RemoteSupport.Session from before it reads the
# record until after it wrote it, so the second writer reads what the first wrote and its compare fails. The
# mutex is per machine (Global\ spans every logon session: WinRM shells and session-0 tasks alike) and Windows
# releases it when a holder dies (the next owner then sees an abandoned mutex and rewrites the whole record).
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: interactive_user
# library: script_folder
# library: audit_event

$taskScriptNames = @('consent_prompt', 'apply_consent', 'expire_session')
$powershellExe = Join-Path -Path $env:SystemRoot -ChildPath 'System32\WindowsPowerShell\v1.0\powershell.exe'

$states = @('pending_confirmation', 'authorized', 'denied', 'timed_out', 'expired', 'deauthorized')

$timestampFields = @('requested_at', 'authorized_at', 'expires_at', 'ended_at', 'changed_at', 'renewal_requested_at')
# Free text the prompt shows to the person at the device: the controller cleans it (session_state.clean_free_text);
# what still carries control, format or line-separator characters, or is longer than the one limit, is refused.
$freeTextFields = @('requested_by', 'reason', 'renewal_requested_by', 'renewal_reason')
$freeTextLimit = 300
$invisibleCharacters = '[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]'

# library: stamps

function ConvertFrom-RecordStamp([string]$Text, [string]$Field) {
    # A timestamp of the record being written: one that does not parse is the caller's bug, named by its field.
    $moment = ConvertFrom-Stamp $Text
    if ($null -eq $moment) {
        throw ("session.{0} is '{1}', not a YYYY-MM-DDTHH:MM:SSZ timestamp." -f $Field, $Text)
    }
    return $moment
}

# --- the lock and the record ----------------------------------------------------------------------------------------
# library: session_lock

# library: session_record

function Restore-SessionRecord($Record) {
    if ($null -eq $Record) {
        if (Test-Path -LiteralPath $sessionKey) {
            Remove-Item -LiteralPath $sessionKey -Recurse -Force
        }
        return
    }
    Write-SessionRecord $Record
}

# --- input ----------------------------------------------------------------------------------------------------------
function Assert-Input($Request) {
    # The controller checks its input against the contract; these checks keep a caller with a bug from writing a
    # record that every later reader would reject.
    $session = $Request.session
    if ($null -eq $session -or $null -eq $Request.audit) {
        throw 'The input needs session and audit.'
    }
    if ([int]$Request.expected_version -lt 0) {
        throw 'expected_version must be 0 (no record yet) or the version that was read.'
    }
    if ([int]$session.version -le [int]$Request.expected_version) {
        throw ('session.version ({0}) must be greater than expected_version ({1}).' -f $session.version, $Request.expected_version)
    }
    if ($states -notcontains [string]$session.state) {
        throw ("session.state '{0}' is not one of {1}." -f $session.state, ($states -join ', '))
    }
    foreach ($field in $recordValues.Keys) {
        if ($null -eq $session.$field -and $optionalFields -notcontains $field) {
            throw ('session.{0} is missing.' -f $field)
        }
        if ($timestampFields -contains $field -and $null -ne $session.$field) {
            ConvertFrom-RecordStamp ([string]$session.$field) $field | Out-Null
        }
    }
    foreach ($field in $freeTextFields) {
        $text = [string]$session.$field
        if ($text -match $invisibleCharacters -or $text.Length -gt $freeTextLimit) {
            throw ('session.{0} must be at most {1} characters without control, format or line-separator characters.' -f $field, $freeTextLimit)
        }
    }
    if (-not ([string]$session.reason).Trim() -or -not ([string]$session.requested_by).Trim()) {
        throw 'session.requested_by and session.reason must not be blank: the person at the device is shown them.'
    }
    if ([bool]$Request.expiry_task -and $null -eq $session.expires_at) {
        throw 'expiry_task needs session.expires_at.'
    }
    $renewal = ([string]$session.state -eq 'authorized' -and $null -ne $session.renewal_requested_at)
    if ([bool]$Request.consent_prompt -and [string]$session.state -ne 'pending_confirmation' -and -not $renewal) {
        throw 'consent_prompt needs a pending request or a renewal waiting (session.renewal_requested_at).'
    }
    $eventId = [int]$Request.audit.event_id
    if ($eventId -lt 1000 -or $eventId -gt 1999 -or -not [string]$Request.audit.message) {
        throw 'audit needs an event_id from 1000 to 1999 and a message.'
    }
}

# --- the task scripts -----------------------------------------------------------------------------------------------
function Install-TaskScripts($Texts) {
    # The controller carries the task scripts (input task_scripts), so a device always runs the version of the
    # consent route that the controller talking to it ships.
    Lock-ScriptFolder
    # UTF-8 with a byte-order mark: Windows PowerShell 5.1 reads a script without one in the ANSI code page.
    $encoding = New-Object -TypeName System.Text.UTF8Encoding -ArgumentList $true
    foreach ($name in $taskScriptNames) {
        $text = [string]$Texts.$name
        $header = '(?m)^# device-script: ' + $name + '\s*$'
        if ($text -notmatch $header) {
            throw ("task_scripts.{0} is not the {0} device script (its header does not name it)." -f $name)
        }
        $path = Join-Path -Path $scriptFolder -ChildPath ($name + '.ps1')
        # A file left by someone else keeps its owner and ACL when overwritten; a new one inherits the folder's.
        if (Test-Path -LiteralPath $path) {
            Remove-Item -LiteralPath $path -Force
        }
        [System.IO.File]::WriteAllText($path, $text, $encoding)
    }
}

function Assert-TaskScriptsInstalled {
    foreach ($name in $taskScriptNames) {
        if (-not (Test-Path -LiteralPath (Join-Path -Path $scriptFolder -ChildPath ($name + '.ps1')))) {
            throw ('The task script {0}.ps1 is not installed in {1}; send task_scripts with this request.' -f $name, $scriptFolder)
        }
    }
}

# --- scheduled tasks ------------------------------------------------------------------------------------------------
function New-TaskScriptAction([string]$Name) {
    # A fixed script path and no arguments: what a task needs (session, user, deadline) it reads from the
    # registry, so nothing from the request ever reaches a command line.
    $path = Join-Path -Path $scriptFolder -ChildPath ($Name + '.ps1')
    $arguments = '-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -File "{0}"' -f $path
    return New-ScheduledTaskAction -Execute $powershellExe -Argument $arguments
}

function New-OnceTrigger([DateTime]$AtUtc) {
    # A start boundary in UTC ("synchronize across time zones"): a time zone or daylight-saving change on the
    # device does not move the deadline or the expiry.
    $trigger = New-ScheduledTaskTrigger -Once -At ($AtUtc.ToLocalTime())
    $trigger.StartBoundary = Format-Stamp $AtUtc
    return $trigger
}

function New-SystemPrincipal {
    return New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
}

# library: task_removal

function Register-ExpiryTask([DateTime]$ExpiresAt) {
    # StartWhenAvailable: a device that was off or asleep at expires_at lapses the grant as soon as it can.
    $settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew -ExecutionTimeLimit (New-TimeSpan -Minutes 5)
    Register-ScheduledTask -TaskName $expireSessionTask -TaskPath '\' -Action (New-TaskScriptAction 'expire_session') -Trigger (New-OnceTrigger $ExpiresAt) -Principal (New-SystemPrincipal) -Settings $settings -Force | Out-Null
}

function Remove-ConsentRoute {
    Remove-Task $consentPromptTask
    Remove-Task $applyConsentTask
    foreach ($key in @($consentKey, $consentRequestKey)) {
        if (Test-Path -LiteralPath $key) {
            Remove-Item -LiteralPath $key -Recurse -Force
        }
    }
}

function Get-ConsentDeadline($Session) {
    # A first request waits confirmation_timeout_seconds from requested_at. A renewal waits as long from when it was
    # asked, but never past the expires_at of the authorization it would extend: the question ends with the grant.
    if ([string]$Session.state -eq 'authorized') {
        $asked = ConvertFrom-RecordStamp ([string]$Session.renewal_requested_at) 'renewal_requested_at'
        $deadline = $asked.AddSeconds([int]$Session.confirmation_timeout_seconds)
        $expiresAt = ConvertFrom-RecordStamp ([string]$Session.expires_at) 'expires_at'
        if ($expiresAt -lt $deadline) {
            $deadline = $expiresAt
        }
        return $deadline
    }
    $requestedAt = ConvertFrom-RecordStamp ([string]$Session.requested_at) 'requested_at'
    return $requestedAt.AddSeconds([int]$Session.confirmation_timeout_seconds)
}

function Register-ConsentRoute($Session, $User, [string]$Account) {
    # One request at a time: a prompt left from an earlier request is closed first.
    Remove-ConsentRoute
    $deadline = Get-ConsentDeadline $Session
    $renewal = ([string]$Session.state -eq 'authorized')
    $requestedBy = [string]$Session.requested_by
    $reason = [string]$Session.reason
    if ($renewal) {
        $requestedBy = [string]$Session.renewal_requested_by
        $reason = [string]$Session.renewal_reason
    }

    # What the prompt shows comes from this key, which the user cannot write: the account Windows authenticated for
    # this request (never a name the requester typed), and the requester's own words, marked as such by the prompt.
    New-Item -Path $consentRequestKey -Force | Out-Null
    Set-ItemProperty -LiteralPath $consentRequestKey -Name 'SessionId' -Value ([string]$Session.id) -Type String
    Set-ItemProperty -LiteralPath $consentRequestKey -Name 'UserName' -Value $User.name -Type String
    Set-ItemProperty -LiteralPath $consentRequestKey -Name 'UserSid' -Value $User.sid -Type String
    Set-ItemProperty -LiteralPath $consentRequestKey -Name 'Deadline' -Value (Format-Stamp $deadline) -Type String
    Set-ItemProperty -LiteralPath $consentRequestKey -Name 'Account' -Value $Account -Type String
    Set-ItemProperty -LiteralPath $consentRequestKey -Name 'RequestedBy' -Value $requestedBy -Type String
    Set-ItemProperty -LiteralPath $consentRequestKey -Name 'Reason' -Value $reason -Type String
    Set-ItemProperty -LiteralPath $consentRequestKey -Name 'Renewal' -Value ([int]$renewal) -Type DWord

    # The prompt runs as the user, who may not write under HKLM:\SOFTWARE: this one key lets that user (and no
    # other) set values. It is deleted once the answer is applied, and with it the grant.
    New-Item -Path $consentKey -Force | Out-Null
    $acl = Get-Acl -LiteralPath $consentKey
    $userSid = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $User.sid
    $rights = [System.Security.AccessControl.RegistryRights]'ReadKey, SetValue'
    $rule = New-Object -TypeName System.Security.AccessControl.RegistryAccessRule -ArgumentList $userSid, $rights, 'Allow'
    $acl.AddAccessRule($rule)
    Set-Acl -LiteralPath $consentKey -AclObject $acl

    # SYSTEM applies the answer when the prompt reports it (event 1010), or the time-out at the deadline. Queue:
    # an answer that arrives while the deadline run is busy is still looked at.
    $eventTriggerClass = Get-CimClass -ClassName MSFT_TaskEventTrigger -Namespace 'Root/Microsoft/Windows/TaskScheduler'
    $answered = New-CimInstance -CimClass $eventTriggerClass -ClientOnly
    $answered.Enabled = $true
    $answered.Subscription = '<QueryList><Query Id="0" Path="Application"><Select Path="Application">' +
        "*[System[Provider[@Name='$eventSource'] and EventID=$consentAnsweredEventId]]" +
        '</Select></Query></QueryList>'
    $applySettings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances Queue -ExecutionTimeLimit (New-TimeSpan -Minutes 5)
    Register-ScheduledTask -TaskName $applyConsentTask -TaskPath '\' -Action (New-TaskScriptAction 'apply_consent') -Trigger @($answered, (New-OnceTrigger $deadline)) -Principal (New-SystemPrincipal) -Settings $applySettings -Force | Out-Null

    # The prompt itself, in the user's own session (Interactive: it runs only while that user is logged on, on
    # their desktop). Normal priority: tasks default to below normal, which makes a window slow to appear.
    $seconds = [Math]::Max(60, [int]($deadline - [DateTime]::UtcNow).TotalSeconds + 60)
    $promptSettings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew -Priority 4 -ExecutionTimeLimit (New-TimeSpan -Seconds $seconds)
    $promptPrincipal = New-ScheduledTaskPrincipal -UserId $User.name -LogonType Interactive -RunLevel Limited
    Register-ScheduledTask -TaskName $consentPromptTask -TaskPath '\' -Action (New-TaskScriptAction 'consent_prompt') -Principal $promptPrincipal -Settings $promptSettings -Force | Out-Null
    Start-ScheduledTask -TaskName $consentPromptTask -TaskPath '\'
}

function Stop-SessionActivities {
    # Started now rather than at its own time; it waits for this script's mutex, so it reads the record just
    # written. File transfers need nothing here: each chunk checks the session before it moves.
    if ($null -ne (Get-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\' -ErrorAction SilentlyContinue)) {
        Start-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\'
    }
}

# --- the audit trail ------------------------------------------------------------------------------------------------
function Write-RequestAudit($Audit) {
    # The last line names the account that authenticated to the device, as Windows knows it (the audit reads it).
    $account = [System.Security.Principal.WindowsIdentity]::GetCurrent().Name
    $message = (Limit-EventMessage ([string]$Audit.message)) + "`r`nAuthenticated account: " + $account
    Write-Audit ([int]$Audit.event_id) ([string]$Audit.entry_type) $message
}

# --- the compare-and-set ----------------------------------------------------------------------------------------------
Assert-Input $InputObject
$session = $InputObject.session
$armsTasks = [bool]$InputObject.consent_prompt -or [bool]$InputObject.expiry_task

$lock = Enter-SessionLock
try {
    $current = Read-SessionRecord
    $currentVersion = 0
    if ($null -ne $current) {
        $currentVersion = [int]$current.version
    }
    $refused = $null
    $user = $null
    if ($currentVersion -ne [int]$InputObject.expected_version) {
        $refused = 'version_conflict'
    }
    elseif ([bool]$InputObject.consent_prompt) {
        $user = Get-InteractiveUser $true
        if ($null -eq $user) {
            $refused = 'no_interactive_user'
        }
    }

    if ($null -eq $refused) {
        # An input field the request may leave out is looked up, not read: StrictMode stops on a missing property.
        if ($null -ne $InputObject.PSObject.Properties['task_scripts'] -and $null -ne $InputObject.task_scripts) {
            Install-TaskScripts $InputObject.task_scripts
        }
        elseif ($armsTasks) {
            Assert-TaskScriptsInstalled
        }
        Write-SessionRecord $session
        try {
            if ([bool]$InputObject.consent_prompt) {
                # Who Windows says runs this script: the account that authenticated over WinRM.
                Register-ConsentRoute $session $user ([System.Security.Principal.WindowsIdentity]::GetCurrent().Name)
            }
            else {
                Remove-ConsentRoute
            }
            if ([bool]$InputObject.expiry_task) {
                Register-ExpiryTask (ConvertFrom-RecordStamp ([string]$session.expires_at) 'expires_at')
            }
            else {
                Remove-Task $expireSessionTask
            }
            if ([bool]$InputObject.end_activities) {
                Stop-SessionActivities
            }
            Write-RequestAudit $InputObject.audit
        }
        catch {
            # A pending request with no prompt, or a grant with no expiry, must not stay behind: put the record
            # back as it was and report the failure.
            Restore-SessionRecord $current
            throw
        }
    }
    $stored = Read-SessionRecord
    $deviceTime = Format-Stamp ([DateTime]::UtcNow)
}
finally {
    $lock.ReleaseMutex()
    $lock.Dispose()
}

$result = [ordered]@{
    script_version = 2
    applied = ($null -eq $refused)
    refused_reason = $refused
    device_time = $deviceTime
    session = $stored
}
ConvertTo-Json -InputObject $result -Compress -Depth 5
