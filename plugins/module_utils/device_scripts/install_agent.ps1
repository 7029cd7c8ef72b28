# device-script: install_agent
# version: 1
# contract: install_agent.contract.json
# Installs or upgrades the support agent's pieces the controller says are missing or out of date: writes the
# agent scripts it is sent to C:\ProgramData\RemoteSupport\scripts (the heartbeat and the session route's task
# scripts, the same texts set_support_session ships), locks that folder down to SYSTEM and Administrators, and
# (re)registers and starts the check-in task RemoteSupport-Heartbeat. The controller compares first
# (get_agent_state), so this runs only when something differs.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: agent_checkin
# library: stamps
# library: script_folder
# library: audit_event

$powershellExe = Join-Path -Path $env:SystemRoot -ChildPath 'System32\WindowsPowerShell\v1.0\powershell.exe'

function Install-ScriptFile([string]$Name, [string]$Text) {
    if ($Name -notmatch '^[a-z][a-z0-9_]*$') {
        throw ("'{0}' is not an agent script name." -f $Name)
    }
    if ($Text -notmatch ('(?m)^# device-script: ' + $Name + '\s*$')) {
        throw ("files.{0} is not the {0} device script (its header does not name it)." -f $Name)
    }
    $path = Join-Path -Path $scriptFolder -ChildPath ($Name + '.ps1')
    # Written beside, then moved over the old file: a task starting meanwhile runs the old or the new script,
    # never half of one. UTF-8 with a byte-order mark: Windows PowerShell 5.1 reads a file without one in the
    # ANSI code page.
    $staging = $path + '.new'
    $encoding = New-Object -TypeName System.Text.UTF8Encoding -ArgumentList $true
    [System.IO.File]::WriteAllText($staging, $Text, $encoding)
    Move-Item -LiteralPath $staging -Destination $path -Force
}

function Register-HeartbeatTask([int]$IntervalSeconds) {
    $heartbeatPath = Join-Path -Path $scriptFolder -ChildPath 'heartbeat.ps1'
    if (-not (Test-Path -LiteralPath $heartbeatPath -PathType Leaf)) {
        throw ('The heartbeat script is not installed in {0}; send files.heartbeat with this request.' -f $scriptFolder)
    }
    # A fixed script path and no arguments for it: nothing from a request reaches the task's command line.
    $arguments = '-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -File "{0}"' -f $heartbeatPath
    $action = New-ScheduledTaskAction -Execute $powershellExe -Argument $arguments
    # Once now, repeated every interval without end (no -RepetitionDuration: indefinitely, on Windows 10 / Server
    # 2016 and later), and at every startup so a rebooted device checks in at once.
    $every = New-ScheduledTaskTrigger -Once -At ([DateTime]::Now) -RepetitionInterval (New-TimeSpan -Seconds $IntervalSeconds)
    $boot = New-ScheduledTaskTrigger -AtStartup
    $settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew -ExecutionTimeLimit (New-TimeSpan -Minutes 2) -Hidden
    $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    $description = 'remote_support.windows agent: writes HKLM\SOFTWARE\RemoteSupport\Agent LastCheckIn (the device''s last activity).'
    # -Force replaces a task of that name (and with it a disabled or altered definition).
    Register-ScheduledTask -TaskName $heartbeatTask -TaskPath '\' -Action $action -Trigger @($every, $boot) -Principal $principal -Settings $settings -Description $description -Force | Out-Null
    Start-ScheduledTask -TaskName $heartbeatTask -TaskPath '\'
}

$interval = [int]$InputObject.heartbeat_interval_seconds
if ($interval -lt 60 -or $interval -gt 3600) {
    throw ('heartbeat_interval_seconds must be 60 to 3600, not {0}.' -f $interval)
}

Lock-ScriptFolder
$written = @()
if ($null -ne $InputObject.files) {
    foreach ($property in @($InputObject.files.PSObject.Properties)) {
        Install-ScriptFile $property.Name ([string]$property.Value)
        $written += $property.Name
    }
}
$registered = $false
if ([bool]$InputObject.heartbeat_task) {
    Register-HeartbeatTask $interval
    $registered = $true
}
if ($null -ne $InputObject.audit) {
    Write-Audit ([int]$InputObject.audit.event_id) ([string]$InputObject.audit.entry_type) ([string]$InputObject.audit.message)
}

$lastCheckIn = Read-LastCheckIn

$result = [ordered]@{
    script_version = 1
    device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
    written = @($written)
    heartbeat_task_registered = $registered
    last_checkin = $lastCheckIn
}
ConvertTo-Json -InputObject $result -Compress -Depth 4
