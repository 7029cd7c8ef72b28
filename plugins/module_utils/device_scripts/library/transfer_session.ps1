# device-script-library: transfer_session
# One file transfer's life on the device, shared by file_transfer_send.ps1 and file_transfer_receive.ps1: its entry
# under HKLM:\SOFTWARE\RemoteSupport\Transfers (deauthorizing and expiry remove it), the session check after every
# chunk, the audit entry, and the stdin/stdout framing around the file's bytes. A script that takes it takes the
# libraries session_lock, session_record and transfer_policy too (libraries do not take one another).

# Each transfer registers under $transfersKey; deauthorizing and expiry remove what is there.
$auditEvents = @{ completed = $transferCompletedEventId; stopped = $transferStoppedEventId; failed = $transferFailedEventId }

function Get-SessionStop([string]$SessionId, [string]$TransferKey) {
    # $null while the session allows this transfer; otherwise what stopped it and the session record as it is now.
    $lock = Enter-SessionLock
    try {
        $record = Read-SessionRecord
        $registered = ($TransferKey -and (Test-Path -LiteralPath $TransferKey))
    }
    finally {
        $lock.ReleaseMutex()
        $lock.Dispose()
    }
    $now = [DateTime]::UtcNow
    $expiresAt = [DateTime]::MinValue
    $hasExpiry = ($null -ne $record -and $null -ne $record.expires_at -and [DateTime]::TryParseExact([string]$record.expires_at, $stampFormat, $invariant, [System.Globalization.DateTimeStyles]'AssumeUniversal, AdjustToUniversal', [ref]$expiresAt))
    $message = $null
    if ($null -eq $record) {
        $message = 'The device has no support session.'
    }
    elseif ([string]$record.id -ne $SessionId) {
        $message = ('The support session {0} was replaced by session {1}.' -f $SessionId, $record.id)
    }
    elseif ([string]$record.state -eq 'deauthorized') {
        $message = ('The support session was deauthorized by {0} at {1}.' -f $record.ended_by, $record.ended_at)
    }
    elseif ([string]$record.state -eq 'expired' -or ([string]$record.state -eq 'authorized' -and $hasExpiry -and $expiresAt -le $now)) {
        $message = ("The support session's authorization expired at {0}." -f $record.expires_at)
    }
    elseif ([string]$record.state -ne 'authorized') {
        $message = ('The support session is {0}.' -f $record.state)
    }
    elseif ($TransferKey -and -not $registered) {
        $message = ('The transfer was ended on the device (its entry under {0} was removed).' -f $transfersKey)
    }
    if ($null -eq $message) {
        return $null
    }
    return [ordered]@{ message = $message; session = $record }
}

function Register-Transfer([string]$TransferKey, $Request, [string]$Direction, [long]$Size) {
    # A run whose connection was lost may still hold the temporary file: it is this transfer's own earlier process
    # (same transfer id), so it is stopped before this one takes over.
    if (Test-Path -LiteralPath $TransferKey) {
        $earlier = Get-Item -LiteralPath $TransferKey
        $earlierPid = [int]$earlier.GetValue('ProcessId', 0)
        $earlierStart = [string]$earlier.GetValue('ProcessStartTime', '')
        if ($earlierPid -gt 0 -and $earlierPid -ne $PID) {
            $process = Get-Process -Id $earlierPid -ErrorAction SilentlyContinue
            if ($null -ne $process -and $process.StartTime.ToUniversalTime().ToString('o') -eq $earlierStart) {
                Stop-Process -Id $earlierPid -Force
                [void]$process.WaitForExit(10000)
            }
        }
    }
    $lock = Enter-SessionLock
    try {
        $stop = Get-SessionStop ([string]$Request.session_id) $null
        if ($null -eq $stop) {
            New-Item -Path $TransferKey -Force | Out-Null
            Set-ItemProperty -LiteralPath $TransferKey -Name 'SessionId' -Value ([string]$Request.session_id) -Type String
            Set-ItemProperty -LiteralPath $TransferKey -Name 'Direction' -Value $Direction -Type String
            Set-ItemProperty -LiteralPath $TransferKey -Name 'Path' -Value ([string]$Request.path) -Type String
            Set-ItemProperty -LiteralPath $TransferKey -Name 'Size' -Value $Size -Type QWord
            Set-ItemProperty -LiteralPath $TransferKey -Name 'RequestedBy' -Value ([string]$Request.requested_by) -Type String
            Set-ItemProperty -LiteralPath $TransferKey -Name 'StartedAt' -Value ([DateTime]::UtcNow.ToString($stampFormat, $invariant)) -Type String
            Set-ItemProperty -LiteralPath $TransferKey -Name 'ProcessId' -Value $PID -Type DWord
            Set-ItemProperty -LiteralPath $TransferKey -Name 'ProcessStartTime' -Value ((Get-Process -Id $PID).StartTime.ToUniversalTime().ToString('o')) -Type String
        }
    }
    finally {
        $lock.ReleaseMutex()
        $lock.Dispose()
    }
    return $stop
}

function Unregister-Transfer([string]$TransferKey) {
    $lock = Enter-SessionLock
    try {
        if (Test-Path -LiteralPath $TransferKey) {
            Remove-Item -LiteralPath $TransferKey -Recurse -Force
        }
    }
    finally {
        $lock.ReleaseMutex()
        $lock.Dispose()
    }
}

function Write-TransferAudit([string]$Outcome, [string]$Message) {
    # Returns the event id written, or $null: a full or broken event log must not turn a finished transfer into an
    # error.
    $entryType = 'Information'
    if ($Outcome -eq 'stopped') {
        $entryType = 'Warning'
    }
    elseif ($Outcome -eq 'failed') {
        $entryType = 'Error'
    }
    try {
        Write-Audit $auditEvents[$Outcome] $entryType $Message
        return $auditEvents[$Outcome]
    }
    catch {
        return $null
    }
}

# --- the streams ----------------------------------------------------------------------------------------------------------
function Write-Message($Message) {
    $bytes = [System.Text.Encoding]::UTF8.GetBytes((ConvertTo-Json -InputObject $Message -Compress -Depth 5) + "`n")
    $OutputStream.Write($bytes, 0, $bytes.Length)
    $OutputStream.Flush()
}

function Read-Line([int]$MaxLength) {
    # One ASCII line from stdin, byte by byte: a buffered reader would swallow the file's bytes behind it.
    $text = New-Object -TypeName System.Text.StringBuilder
    while ($true) {
        $byte = $InputStream.ReadByte()
        if ($byte -lt 0) {
            throw (New-Refusal 'interrupted' 'stdin ended before the controller said how to go on: the transfer was interrupted.')
        }
        if ($byte -eq 10) {
            return $text.ToString()
        }
        if ($text.Length -ge $MaxLength) {
            throw 'The controller sent a line this script does not expect.'
        }
        [void]$text.Append([char]$byte)
    }
}

function Add-FileBytes($Sha, $File, [byte[]]$Buffer, [long]$Count) {
    # Hashes the first $Count bytes of $File.
    $File.Position = 0
    $left = $Count
    while ($left -gt 0) {
        $read = $File.Read($Buffer, 0, [int][Math]::Min([long]$Buffer.Length, $left))
        if ($read -le 0) {
            throw ('{0} is shorter than {1} bytes.' -f $File.Name, $Count)
        }
        [void]$Sha.TransformBlock($Buffer, 0, $read, $null, 0)
        $left -= $read
    }
}
