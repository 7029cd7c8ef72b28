# device-script: read_audit_events
# version: 1
# contract: read_audit_events.contract.json
# Reads the support audit trail back: the Application log's events of source RemoteSupport.Windows written at or
# after `since` (or in the last `last_seconds` by this device's clock), oldest first, each with its record id, the
# time Windows stamped on it, its id, level and text; and what the Application log is (mode, maximum size, its
# oldest record), so that a log that overwrote events after `since` can be told from one that has them all.
# Changes nothing. The controller turns the events into sessions (plugins/module_utils/support_audit.py).
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

$logName = 'Application'
# library: device_layout

# library: stamps

$now = [DateTime]::UtcNow
# A request carries since or last_seconds, not both: each is looked up, not read, as StrictMode stops on a missing
# property.
if ($null -ne $InputObject.PSObject.Properties['since'] -and $null -ne $InputObject.since) {
    $since = ConvertFrom-Stamp ([string]$InputObject.since)
    if ($null -eq $since) {
        throw ("since '{0}' is not a YYYY-MM-DDTHH:MM:SSZ timestamp." -f $InputObject.since)
    }
}
elseif ($null -ne $InputObject.PSObject.Properties['last_seconds'] -and $null -ne $InputObject.last_seconds) {
    $since = $now.AddSeconds(-[long]$InputObject.last_seconds)
}
else {
    throw 'The request names neither since nor last_seconds: give one of them.'
}
# Whole seconds, as every stamp of the collection: an event of the same second as `since` is read.
$since = New-Object -TypeName DateTime -ArgumentList $since.Year, $since.Month, $since.Day, $since.Hour, $since.Minute, $since.Second, ([DateTimeKind]::Utc)
$maxEvents = [int]$InputObject.max_events

function Get-Level($LogEvent) {
    # Classic entry types as levels: 1 critical and 2 error read as Error, 3 Warning, anything else Information.
    # The number, not LevelDisplayName, which is in the device's display language.
    switch ([int]$LogEvent.Level) {
        1 { return 'Error' }
        2 { return 'Error' }
        3 { return 'Warning' }
        default { return 'Information' }
    }
}

function Get-EventText($LogEvent) {
    # Write-EventLog stores the message as the event's one insertion string; reading it there avoids formatting
    # through the source's message file, which may be missing (the source registered on another machine).
    if ($null -ne $LogEvent.Properties -and $LogEvent.Properties.Count -ge 1) {
        return [string]$LogEvent.Properties[0].Value
    }
    return [string]$LogEvent.Message
}

function Test-NoEvents($ErrorRecord) {
    # Get-WinEvent fails instead of returning nothing when no event matches, or when the source was never
    # registered (nothing was ever written under it).
    $id = [string]$ErrorRecord.FullyQualifiedErrorId
    return ($id -like 'NoMatchingEventsFound*' -or $id -like 'NoMatchingProvidersFound*')
}

# --- the log itself -------------------------------------------------------------------------------------------------
$listed = Get-WinEvent -ListLog $logName
$information = [System.Diagnostics.Eventing.Reader.EventLogSession]::GlobalSession.GetLogInformation($logName, [System.Diagnostics.Eventing.Reader.PathType]::LogName)
$oldestTime = $null
$oldestRecordId = $null
try {
    $oldest = Get-WinEvent -LogName $logName -MaxEvents 1 -Oldest
    $oldestTime = Format-Stamp $oldest.TimeCreated
    $oldestRecordId = [long]$oldest.RecordId
}
catch {
    if (-not (Test-NoEvents $_)) {
        throw
    }
}

# --- the audit events -----------------------------------------------------------------------------------------------
$events = New-Object -TypeName System.Collections.ArrayList
$truncated = $false
try {
    # One more than asked for tells whether there were more.
    $found = @(Get-WinEvent -FilterHashtable @{ LogName = $logName; ProviderName = $eventSource; StartTime = $since } -Oldest -MaxEvents ($maxEvents + 1))
    if ($found.Count -gt $maxEvents) {
        $truncated = $true
        $found = $found[0..($maxEvents - 1)]
    }
    foreach ($entry in $found) {
        [void]$events.Add([ordered]@{
            record_id = [long]$entry.RecordId
            time_created = Format-Stamp $entry.TimeCreated
            event_id = [int]$entry.Id
            level = Get-Level $entry
            message = Get-EventText $entry
        })
    }
}
catch {
    if (-not (Test-NoEvents $_)) {
        throw
    }
}

$result = [ordered]@{
    script_version = 1
    device_time = Format-Stamp $now
    computer_name = $env:COMPUTERNAME
    since = Format-Stamp $since
    log = [ordered]@{
        name = $logName
        log_mode = [string]$listed.LogMode
        maximum_size_bytes = [long]$listed.MaximumSizeInBytes
        file_size_bytes = [long]$information.FileSize
        record_count = [long]$information.RecordCount
        oldest_record_id = $oldestRecordId
        oldest_time_created = $oldestTime
    }
    events = @($events)
    truncated = $truncated
}
ConvertTo-Json -InputObject $result -Compress -Depth 5
