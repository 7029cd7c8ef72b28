# device-script: get_agent_state
# version: 1
# contract: get_agent_state.contract.json
# Reads what the support agent consists of on this device, so the controller can tell what to install, upgrade or
# repair: each agent script in C:\ProgramData\RemoteSupport\scripts (present, version header, SHA-256 of the file),
# whether that folder is locked down to SYSTEM and Administrators, the check-in task RemoteSupport-Heartbeat (its
# action, principal, repetition and state) and the last check-in. Changes nothing.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: agent_checkin
# library: stamps
# Rights that let a trustee change what SYSTEM runs, with GENERIC_ALL and GENERIC_WRITE, which an ACL may carry as
# raw bits.
$writeRights = [long][System.Security.AccessControl.FileSystemRights]'Write, Modify, FullControl, Delete, ChangePermissions, TakeOwnership' -bor 0x50000000

function Read-ScriptFile([string]$Name) {
    if ($Name -notmatch '^[a-z][a-z0-9_]*$') {
        throw ("'{0}' is not an agent script name." -f $Name)
    }
    $path = Join-Path -Path $scriptFolder -ChildPath ($Name + '.ps1')
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
        return [ordered]@{ present = $false; version = $null; sha256 = $null }
    }
    $bytes = [System.IO.File]::ReadAllBytes($path)
    $sha = New-Object -TypeName System.Security.Cryptography.SHA256Managed
    $hash = -join ($sha.ComputeHash($bytes) | ForEach-Object { $_.ToString('x2') })
    $sha.Dispose()
    # The header names the script and its version: '# device-script: NAME' then '# version: N'.
    # GetString keeps the byte-order mark as a character, which would hide the header's first line from ^.
    $text = [System.Text.Encoding]::UTF8.GetString($bytes).TrimStart([char]0xFEFF)
    $version = $null
    $named = $text -match ('(?m)^# device-script: ' + $Name + '\s*$')
    if ($named -and $text -match '(?m)^# version: *(\d+)\s*$') {
        $version = [int]$Matches[1]
    }
    return [ordered]@{ present = $true; version = $version; sha256 = $hash }
}

function Test-FolderLockedDown {
    # Locked down: inheritance from C:\ProgramData cut (where any user may create files) and no one but the
    # trusted writers allowed to write.
    if (-not (Test-Path -LiteralPath $scriptFolder -PathType Container)) {
        return $false
    }
    $acl = Get-Acl -LiteralPath $scriptFolder
    if (-not $acl.AreAccessRulesProtected) {
        return $false
    }
    foreach ($rule in $acl.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])) {
        $allows = $rule.AccessControlType -eq [System.Security.AccessControl.AccessControlType]::Allow
        $writes = ([long]$rule.FileSystemRights -band $writeRights) -ne 0
        if ($allows -and $writes -and $trustedWriters -notcontains $rule.IdentityReference.Value) {
            return $false
        }
    }
    return $true
}

function Read-HeartbeatTask {
    $task = Get-ScheduledTask -TaskName $heartbeatTask -TaskPath '\' -ErrorAction SilentlyContinue
    if ($null -eq $task) {
        return $null
    }
    $action = @($task.Actions)[0]
    $interval = $null
    foreach ($trigger in @($task.Triggers)) {
        if ($null -ne $trigger.Repetition -and [string]$trigger.Repetition.Interval) {
            $interval = [int][System.Xml.XmlConvert]::ToTimeSpan([string]$trigger.Repetition.Interval).TotalSeconds
        }
    }
    $info = Get-ScheduledTaskInfo -TaskName $heartbeatTask -TaskPath '\'
    $lastRun = $null
    # Task Scheduler reports 1999-11-30 for a task that has never run.
    if ($null -ne $info.LastRunTime -and $info.LastRunTime.Year -ge 2000) {
        $lastRun = $info.LastRunTime.ToUniversalTime().ToString($stampFormat, $invariant)
    }
    return [ordered]@{
        state = [string]$task.State
        execute = [string]$action.Execute
        arguments = [string]$action.Arguments
        user_id = [string]$task.Principal.UserId
        interval_seconds = $interval
        last_run_time = $lastRun
        last_task_result = [long]$info.LastTaskResult
    }
}

$files = [ordered]@{}
foreach ($name in @($InputObject.components)) {
    $files[[string]$name] = Read-ScriptFile ([string]$name)
}

$lastCheckIn = Read-LastCheckIn

$result = [ordered]@{
    script_version = 1
    device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
    system_root = [string]$env:SystemRoot
    folder = [ordered]@{
        path = $scriptFolder
        exists = (Test-Path -LiteralPath $scriptFolder -PathType Container)
        locked_down = (Test-FolderLockedDown)
    }
    files = $files
    heartbeat_task = Read-HeartbeatTask
    last_checkin = $lastCheckIn
}
ConvertTo-Json -InputObject $result -Compress -Depth 5
