# device-script-library: audit_event
# One entry of the audit trail: the Application event log, under the collection's source ($eventSource, library
# device_layout). Registering the source needs an administrator, which the scripts that write first run as; the
# SYSTEM tasks then write under the same source.

function Limit-EventMessage([string]$Message) {
    # An event's message holds at most 31,839 characters; a longer one (a long reason) would fail the write.
    if ($Message.Length -gt 31000) {
        return $Message.Substring(0, 31000)
    }
    return $Message
}

function Write-Audit([int]$EventId, [string]$EntryType, [string]$Message) {
    if (-not [System.Diagnostics.EventLog]::SourceExists($eventSource)) {
        New-EventLog -LogName Application -Source $eventSource
    }
    Write-EventLog -LogName Application -Source $eventSource -EventId $EventId -EntryType $EntryType -Message $Message
}
