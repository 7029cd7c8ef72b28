# device-script: file_transfer_receive
# version: 1
# contract: file_transfer_receive.contract.json
# Sends a device file to the controller (direction from_device, "receiving" in the product's words) through stdout,
# as one long-running command started by stream_bootstrap.ps1. Nothing on the device changes but the audit entry.
#
#   stdout  {"kind":"ready","offset":N,"size":S,"prefix_sha256":H}   the first N bytes, which the controller says it
#                                                                    kept from an earlier run, hash to H here
#   stdin   "<start>\n"                                              the controller's answer: N (resume) or 0
#   stdout  frames: a 4-byte big-endian length, then that many bytes of the file, from <start> on; length 0 ends
#   stdout  {"kind":"result", ...}                                   last line; the contract's output
#
# A refusal before the first frame is answered with the result line alone. The source is opened sharing only
# reading, so nobody changes it while it is read (a file another program is writing is "in use", as Explorer's copy
# says), and its size and last write time are compared at the end as well. After every frame the transfer checks
# that the session still allows it, exactly as file_transfer_send.ps1 does, and stops cleanly when it does not.
param($InputObject, $InputStream, $OutputStream)

$ErrorActionPreference = 'Stop'

$sessionKey = 'HKLM:\SOFTWARE\RemoteSupport\Session'
$transfersKey = 'HKLM:\SOFTWARE\RemoteSupport\Transfers'
$policyKey = 'HKLM:\SOFTWARE\RemoteSupport\Policy'
$defaultAllowedRoots = @('C:\Users')
$defaultMaxSizeBytes = [long]4294967296
$eventSource = 'RemoteSupport.Windows'
$auditEvents = @{ completed = 1030; stopped = 1031; failed = 1032 }
$stampFormat = 'yyyy-MM-ddTHH:mm:ssZ'
$invariant = [System.Globalization.CultureInfo]::InvariantCulture

# Record field -> registry value under the Session key (the same table as get_support_session.ps1).
$recordValues = [ordered]@{
    id = 'Id'
    state = 'State'
    requested_by = 'RequestedBy'
    reason = 'Reason'
    requested_at = 'RequestedAt'
    confirmation_required = 'ConfirmationRequired'
    confirmed_by = 'ConfirmedBy'
    authorized_at = 'AuthorizedAt'
    expires_at = 'ExpiresAt'
    ended_by = 'EndedBy'
    ended_at = 'EndedAt'
    version = 'Version'
    ttl_seconds = 'TtlSeconds'
    confirmation_timeout_seconds = 'ConfirmationTimeoutSeconds'
    changed_by = 'ChangedBy'
    changed_at = 'ChangedAt'
}
$optionalFields = @('confirmed_by', 'authorized_at', 'expires_at', 'ended_by', 'ended_at')
$integerFields = @('version', 'ttl_seconds', 'confirmation_timeout_seconds')

# --- failures with a name -----------------------------------------------------------------------------------------------
function New-Refusal([string]$Code, [string]$Message) {
    $exception = New-Object -TypeName System.InvalidOperationException -ArgumentList $Message
    $exception.Data['code'] = $Code
    return $exception
}

function Get-Failure($Exception) {
    while ($Exception -is [System.Management.Automation.MethodInvocationException] -and $null -ne $Exception.InnerException) {
        $Exception = $Exception.InnerException
    }
    $code = $Exception.Data['code']
    if ($null -eq $code) {
        $win32 = $Exception.HResult -band 0xFFFF
        if ($Exception -is [System.UnauthorizedAccessException] -or $Exception -is [System.Security.SecurityException]) {
            $code = 'access_denied'
        }
        elseif ($Exception -is [System.IO.PathTooLongException]) {
            $code = 'name_too_long'
        }
        elseif ($Exception -is [System.IO.FileNotFoundException] -or $Exception -is [System.IO.DirectoryNotFoundException] -or $Exception -is [System.IO.DriveNotFoundException]) {
            $code = 'not_found'
        }
        elseif ($Exception -is [System.ArgumentException] -or $Exception -is [System.NotSupportedException]) {
            $code = 'invalid_path'
        }
        elseif ($Exception -is [System.IO.IOException]) {
            if ($win32 -eq 32 -or $win32 -eq 33) {
                $code = 'in_use'
            }
            elseif ($win32 -eq 112 -or $win32 -eq 39) {
                $code = 'disk_full'
            }
            elseif ($win32 -eq 5) {
                $code = 'access_denied'
            }
            elseif ($win32 -eq 206) {
                $code = 'name_too_long'
            }
            elseif ($win32 -eq 80 -or $win32 -eq 183) {
                $code = 'exists'
            }
            elseif ($win32 -eq 2 -or $win32 -eq 3 -or $win32 -eq 53 -or $win32 -eq 67) {
                $code = 'not_found'
            }
        }
    }
    if ($null -eq $code) {
        return $null
    }
    return [ordered]@{ code = [string]$code; message = [string]$Exception.Message }
}

# --- the policy (the rules of support_policy.effective_policy; the same functions as file_transfer_prepare.ps1) --------
function ConvertTo-Root($Text) {
    $root = ([string]$Text).Trim().Replace('/', '\')
    if (-not $root -or $root -match '[<>"|?*\x00-\x1f]') {
        return $null
    }
    if ($root -match '^[A-Za-z]:\\') {
        $root = $root.Substring(0, 1).ToUpperInvariant() + $root.Substring(1)
        $rest = $root.Substring(3)
    }
    elseif ($root -match '^\\\\[^\\]+\\[^\\]+') {
        $rest = $root.Substring(2)
    }
    else {
        return $null
    }
    if ($rest.Contains(':')) {
        return $null
    }
    foreach ($part in $rest.Split('\')) {
        if ($part.Trim(' ') -eq '.' -or $part.Trim(' ') -eq '..') {
            return $null
        }
    }
    if ($rest.TrimEnd('\').Contains('\\')) {
        return $null
    }
    $root = $root.TrimEnd('\')
    if ($root.Length -eq 2) {
        $root = $root + '\'
    }
    if ($root.Length -gt 248) {
        return $null
    }
    return $root
}

function Read-TransferPolicy {
    $policy = [ordered]@{ allowed_roots = $defaultAllowedRoots; max_size_bytes = $defaultMaxSizeBytes }
    if (-not (Test-Path -LiteralPath $policyKey)) {
        return $policy
    }
    $key = Get-Item -LiteralPath $policyKey
    if ($key.GetValueNames() -contains 'FileTransferMaxSizeBytes') {
        $kind = [string]$key.GetValueKind('FileTransferMaxSizeBytes')
        $number = [long]0
        if ($kind -ne 'MultiString' -and $kind -ne 'Binary' -and [long]::TryParse(([string]$key.GetValue('FileTransferMaxSizeBytes')).Trim(), [ref]$number) -and $number -ge 1) {
            $policy.max_size_bytes = $number
        }
    }
    if ($key.GetValueNames() -contains 'FileTransferAllowedRoots' -and [string]$key.GetValueKind('FileTransferAllowedRoots') -eq 'MultiString') {
        $usable = New-Object -TypeName System.Collections.ArrayList
        foreach ($entry in @($key.GetValue('FileTransferAllowedRoots'))) {
            $root = ConvertTo-Root $entry
            if ($null -ne $root) {
                [void]$usable.Add($root)
            }
        }
        $policy.allowed_roots = $usable.ToArray()
    }
    return $policy
}

function Test-UnderRoot([string]$Path, $Roots) {
    foreach ($root in $Roots) {
        $prefix = ([string]$root).TrimEnd('\') + '\'
        if ($Path.StartsWith($prefix, [System.StringComparison]::OrdinalIgnoreCase)) {
            return $true
        }
    }
    return $false
}

# --- the session --------------------------------------------------------------------------------------------------------
function Enter-SessionLock {
    # The session's writers hold this machine-wide mutex while they change the record (set_support_session.ps1).
    # Created with the same explicit DACL as theirs, so whoever creates it first, SYSTEM and Administrators may use it.
    $security = New-Object -TypeName System.Security.AccessControl.MutexSecurity
    foreach ($sid in @('S-1-5-18', 'S-1-5-32-544')) {
        $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid
        $security.AddAccessRule((New-Object -TypeName System.Security.AccessControl.MutexAccessRule -ArgumentList $identity, 'FullControl', 'Allow'))
    }
    $createdNew = $false
    $mutex = [System.Threading.Mutex]::new($false, 'Global\RemoteSupport.Session', [ref]$createdNew, $security)
    try {
        if (-not $mutex.WaitOne(30000)) {
            $mutex.Dispose()
            throw 'Timed out after 30 s waiting for the session lock (mutex Global\RemoteSupport.Session).'
        }
    }
    catch {
        $inner = $_.Exception
        while ($null -ne $inner -and -not ($inner -is [System.Threading.AbandonedMutexException])) {
            $inner = $inner.InnerException
        }
        if ($null -eq $inner) {
            throw
        }
    }
    return $mutex
}

function Read-SessionRecord {
    if (-not (Test-Path -LiteralPath $sessionKey)) {
        return $null
    }
    $key = Get-Item -LiteralPath $sessionKey
    if ($null -eq $key.GetValue('Id')) {
        return $null
    }
    $record = [ordered]@{}
    foreach ($field in $recordValues.Keys) {
        $value = $key.GetValue($recordValues[$field])
        if ($null -eq $value) {
            if ($optionalFields -notcontains $field) {
                throw ("The session record under {0} has no {1} value. Remove the key to start afresh." -f $sessionKey, $recordValues[$field])
            }
            $record[$field] = $null
        }
        elseif ($field -eq 'confirmation_required') {
            $record[$field] = ([int]$value -ne 0)
        }
        elseif ($integerFields -contains $field) {
            $record[$field] = [int]$value
        }
        else {
            $record[$field] = [string]$value
        }
    }
    return $record
}

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

function Write-Audit([string]$Outcome, [string]$Message) {
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
        if (-not [System.Diagnostics.EventLog]::SourceExists($eventSource)) {
            New-EventLog -LogName Application -Source $eventSource
        }
        Write-EventLog -LogName Application -Source $eventSource -EventId $auditEvents[$Outcome] -EntryType $entryType -Message $Message
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

function ConvertTo-Hex([byte[]]$Bytes) {
    return ([System.BitConverter]::ToString($Bytes) -replace '-', '').ToLowerInvariant()
}

# --- the transfer -----------------------------------------------------------------------------------------------------------
$request = $InputObject
$chunkBytes = [int]$request.chunk_bytes
$transferKey = Join-Path -Path $transfersKey -ChildPath ([string]$request.transfer_id)
$result = [ordered]@{
    kind = 'result'
    script_version = 1
    device_time = $null
    outcome = 'failed'
    path = [string]$request.path
    size = $null
    offset = $null
    bytes_sent = [long]0
    sha256 = $null
    error = $null
    session = $null
    audit_event_id = $null
}
$file = $null
$started = $false
$framing = $false

try {
    $path = [System.IO.Path]::GetFullPath([string]$request.path)
    $result.path = $path
    $policy = Read-TransferPolicy
    if (-not (Test-UnderRoot $path $policy.allowed_roots)) {
        throw (New-Refusal 'path_not_allowed' ("'{0}' is outside the folders this device allows file transfers in (policy FileTransferAllowedRoots: {1})." -f $path, (@($policy.allowed_roots) -join '; ')))
    }
    if ([System.IO.Directory]::Exists($path)) {
        throw (New-Refusal 'is_directory' ("'{0}' is a folder." -f $path))
    }
    if (-not [System.IO.File]::Exists($path)) {
        throw (New-Refusal 'not_found' ("Could not find file '{0}'." -f $path))
    }
    $stop = Register-Transfer $transferKey $request 'from_device' ([long](New-Object -TypeName System.IO.FileInfo -ArgumentList $path).Length)
    if ($null -ne $stop) {
        $result.session = $stop.session
        throw (New-Refusal 'session_not_authorized' $stop.message)
    }
    $started = $true

    $file = New-Object -TypeName System.IO.FileStream -ArgumentList $path, 'Open', 'Read', 'Read', 1048576
    $size = [long]$file.Length
    $lastWrite = [System.IO.File]::GetLastWriteTimeUtc($path)
    $result.size = $size
    if ($size -gt $policy.max_size_bytes) {
        throw (New-Refusal 'too_large' ('The file is {0} bytes; this device allows at most {1} bytes per transfer (policy FileTransferMaxSizeBytes).' -f $size, $policy.max_size_bytes))
    }
    $kept = [long]$request.offset
    if ($kept -gt $size) {
        $kept = 0
    }
    # One frame: 4 bytes of length, then up to chunk_bytes of the file, read straight behind the length.
    $frame = New-Object -TypeName byte[] -ArgumentList ($chunkBytes + 4)
    $sha = [System.Security.Cryptography.SHA256]::Create()
    Add-FileBytes $sha $file $frame $kept
    [void]$sha.TransformFinalBlock((New-Object -TypeName byte[] -ArgumentList 0), 0, 0)
    $prefixHash = ConvertTo-Hex $sha.Hash
    $sha.Dispose()
    Write-Message ([ordered]@{ kind = 'ready'; offset = $kept; size = $size; prefix_sha256 = $prefixHash })
    $framing = $true

    $start = [long](Read-Line 20)
    if ($start -ne 0 -and $start -ne $kept) {
        throw ('The controller asked to start at byte {0}; only 0 or {1} are possible.' -f $start, $kept)
    }
    $sha = [System.Security.Cryptography.SHA256]::Create()
    Add-FileBytes $sha $file $frame $start
    $file.Position = $start
    $result.offset = $start

    $remaining = $size - $start
    $stop = $null
    while ($remaining -gt 0) {
        $want = [int][Math]::Min([long]$chunkBytes, $remaining)
        $count = 0
        while ($count -lt $want) {
            $read = $file.Read($frame, 4 + $count, $want - $count)
            if ($read -le 0) {
                throw (New-Refusal 'source_changed' ("'{0}' became shorter while it was read." -f $path))
            }
            $count += $read
        }
        [void]$sha.TransformBlock($frame, 4, $count, $null, 0)
        $frame[0] = [byte](($count -shr 24) -band 0xFF)
        $frame[1] = [byte](($count -shr 16) -band 0xFF)
        $frame[2] = [byte](($count -shr 8) -band 0xFF)
        $frame[3] = [byte]($count -band 0xFF)
        $OutputStream.Write($frame, 0, $count + 4)
        $remaining -= $count
        $result.bytes_sent += $count
        $stop = Get-SessionStop ([string]$request.session_id) $transferKey
        if ($null -ne $stop) {
            break
        }
    }
    if ($null -ne $stop) {
        $result.outcome = 'stopped'
        $result.session = $stop.session
        $result.error = [ordered]@{ code = 'session_ended'; message = $stop.message }
    }
    else {
        [void]$sha.TransformFinalBlock((New-Object -TypeName byte[] -ArgumentList 0), 0, 0)
        $result.sha256 = ConvertTo-Hex $sha.Hash
        if ([long](New-Object -TypeName System.IO.FileInfo -ArgumentList $path).Length -ne $size -or [System.IO.File]::GetLastWriteTimeUtc($path) -ne $lastWrite) {
            throw (New-Refusal 'source_changed' ("'{0}' changed while it was read." -f $path))
        }
        $result.outcome = 'completed'
    }
}
catch {
    $failure = Get-Failure $_.Exception
    if ($null -eq $failure) {
        if ($null -ne $file) {
            $file.Dispose()
        }
        throw
    }
    $result.outcome = 'failed'
    $result.error = $failure
}
finally {
    if ($null -ne $file) {
        $file.Dispose()
    }
}

if ($framing) {
    # The frame of length 0: no more of the file follows.
    $OutputStream.Write((New-Object -TypeName byte[] -ArgumentList 4), 0, 4)
}
if ($started) {
    Unregister-Transfer $transferKey
    $what = 'File transfer from {0}: {1} -> {2}' -f $env:COMPUTERNAME, $result.path, [string]$request.destination
    if ($result.outcome -eq 'completed') {
        $result.audit_event_id = Write-Audit 'completed' ('{0}, {1} bytes, SHA-256 {2}. Successfully received. Requested by {3}.' -f $what, $result.size, $result.sha256, [string]$request.requested_by)
    }
    else {
        $result.audit_event_id = Write-Audit $result.outcome ('{0}: Sending failed after {1} of {2} bytes: {3} Requested by {4}.' -f $what, ($result.offset + $result.bytes_sent), $result.size, $result.error.message, [string]$request.requested_by)
    }
}
$result.device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
Write-Message $result
