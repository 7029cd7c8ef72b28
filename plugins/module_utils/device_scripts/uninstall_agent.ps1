# device-script: uninstall_agent
# version: 1
# contract: uninstall_agent.contract.json
# Removes what the collection leaves on a device: its scheduled tasks (RemoteSupport-*), the folder
# C:\ProgramData\RemoteSupport with the agent scripts, the registry key HKLM:\SOFTWARE\RemoteSupport (agent, policy,
# session record), the ~rs-*.partial files interrupted transfers left in the folders the heartbeat noted, and the
# event source RemoteSupport.Windows (after one last audit entry, so the log tells who removed it; the entries
# already written stay in the Application log). With check_only it removes nothing and reports what it would.
# It refuses, removing nothing, while a support session is authorized or waiting for the client, while a
# remote-control grant is in place or a transfer is registered: those are ended first, through support_session and
# remote_control, which put back what they changed.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: stamps
# library: session_lock
# library: session_record
# library: partial_files

$taskNames = @($heartbeatTask, $consentPromptTask, $applyConsentTask, $expireSessionTask, $endRemoteControlTask)

function Get-Blocker($Record) {
    # What keeps the agent in use, as {reason, message}; $null when nothing does.
    if ($null -ne $Record -and @('authorized', 'pending_confirmation') -contains $Record.state) {
        $live = $true
        if ($Record.state -eq 'authorized' -and $null -ne $Record.expires_at) {
            $expires = [DateTime]::MinValue
            if ([DateTime]::TryParseExact([string]$Record.expires_at, $stampFormat, $invariant, [System.Globalization.DateTimeStyles]::AdjustToUniversal, [ref]$expires)) {
                $live = $expires -gt [DateTime]::UtcNow
            }
        }
        if ($live) {
            return [ordered]@{
                reason = 'session_active'
                message = ('Support session {0} is {1} on this device; end it first (support_session state=deauthorized).' -f $Record.id, $Record.state)
            }
        }
    }
    foreach ($key in @('RemoteControl', 'RemoteControlUndo')) {
        if (Test-Path -LiteralPath (Join-Path -Path $rootKey -ChildPath $key)) {
            return [ordered]@{
                reason = 'remote_control_granted'
                message = 'A remote-control grant is in place on this device; stop it first (remote_control state=stopped), which puts the listener permissions back.'
            }
        }
    }
    $transfers = Join-Path -Path $rootKey -ChildPath 'Transfers'
    if ((Test-Path -LiteralPath $transfers) -and @(Get-ChildItem -LiteralPath $transfers).Count -gt 0) {
        return [ordered]@{
            reason = 'transfer_running'
            message = 'A file transfer is registered on this device; let it finish or end the session first (support_session state=deauthorized).'
        }
    }
    return $null
}

function Remove-Folder([string]$Path) {
    # Deletes a folder tree without following a junction or link in it: such an entry is removed as a link, its
    # target untouched (Remove-Item -Recurse on Windows PowerShell 5.1 may follow a junction into its target).
    if (Test-ReparsePoint $Path) {
        [System.IO.Directory]::Delete($Path, $false)
        return
    }
    foreach ($entry in @([System.IO.Directory]::GetDirectories($Path))) {
        Remove-Folder $entry
    }
    foreach ($file in @([System.IO.Directory]::GetFiles($Path))) {
        [System.IO.File]::SetAttributes($file, [System.IO.FileAttributes]::Normal)
        [System.IO.File]::Delete($file)
    }
    [System.IO.Directory]::Delete($Path, $false)
}

$checkOnly = [bool]$InputObject.check_only
$found = [ordered]@{
    tasks = @()
    folder = $null
    registry_key = $null
    event_source = $null
    partial_files = @()
}
$removed = $false
$refused = $null

$lock = Enter-SessionLock
try {
    try {
        $record = Read-SessionRecord
    }
    catch {
        # A record that cannot be read (values missing) holds no session to protect; the key goes with the rest.
        $record = $null
    }
    $refused = Get-Blocker $record
    foreach ($name in $taskNames) {
        if ($null -ne (Get-ScheduledTask -TaskName $name -TaskPath '\' -ErrorAction SilentlyContinue)) {
            $found.tasks += $name
        }
    }
    if ([System.IO.Directory]::Exists($rootFolder)) {
        $found.folder = $rootFolder
    }
    if (Test-Path -LiteralPath $rootKey) {
        $found.registry_key = $rootKey
    }
    if ([System.Diagnostics.EventLog]::SourceExists($eventSource)) {
        $found.event_source = $eventSource
    }
    $folders = @(Read-TransferFolders)
    foreach ($folder in $folders) {
        if ([System.IO.Directory]::Exists($folder) -and -not (Test-ReparsePoint $folder)) {
            foreach ($path in @([System.IO.Directory]::GetFiles($folder, '~rs-*.partial'))) {
                if ([System.IO.Path]::GetFileName($path) -match $partialPattern) {
                    $found.partial_files += $path
                }
            }
        }
    }
    $anything = $found.tasks.Count -gt 0 -or $null -ne $found.folder -or $null -ne $found.registry_key -or $null -ne $found.event_source -or $found.partial_files.Count -gt 0
    if ($anything -and $null -eq $refused -and -not $checkOnly) {
        if ($null -ne $InputObject.audit) {
            if ($null -eq $found.event_source) {
                New-EventLog -LogName Application -Source $eventSource
            }
            Write-EventLog -LogName Application -Source $eventSource -EventId ([int]$InputObject.audit.event_id) -EntryType ([string]$InputObject.audit.entry_type) -Message ([string]$InputObject.audit.message)
        }
        # The heartbeat first, so nothing writes the agent's key again while the rest goes.
        foreach ($name in $found.tasks) {
            Stop-ScheduledTask -TaskName $name -TaskPath '\'
            Unregister-ScheduledTask -TaskName $name -TaskPath '\' -Confirm:$false
        }
        $found.partial_files = @(Remove-PartialFiles $folders 0)
        if ($null -ne $found.folder) {
            Remove-Folder $rootFolder
        }
        if ($null -ne $found.registry_key) {
            Remove-Item -LiteralPath $rootKey -Recurse -Force
        }
        if ([System.Diagnostics.EventLog]::SourceExists($eventSource)) {
            Remove-EventLog -Source $eventSource
            $found.event_source = $eventSource
        }
        $removed = $true
    }
}
finally {
    $lock.ReleaseMutex()
    $lock.Dispose()
}

$result = [ordered]@{
    script_version = 1
    device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
    found = $found
    removed = $removed
    refused = $refused
}
ConvertTo-Json -InputObject $result -Compress -Depth 4
