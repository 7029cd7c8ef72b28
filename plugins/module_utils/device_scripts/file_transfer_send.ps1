# device-script: file_transfer_send
# version: 1
# contract: file_transfer_send.contract.json
# Receives a file from the controller (direction to_device, "sending" in the product's words) through stdin, as one
# long-running command started by stream_bootstrap.ps1, and renames it into place once its SHA-256 matches.
#
#   stdout  {"kind":"ready","offset":N,"prefix_sha256":H}   N bytes of an earlier run's temporary file can be kept
#   stdin   "<start>\n"                                     the controller's answer: N (resume) or 0 (start over)
#   stdin   the file's bytes from <start> to its end
#   stdout  {"kind":"progress","bytes":B}                   after every chunk that is on disk and checked
#   stdin   "<sha256 of the whole file>\n"
#   stdout  {"kind":"result", ...}                          last line; the contract's output
#
# The file is written to ~rs-<transfer_id>.partial beside the destination and renamed into place only after the
# hash matches, so the destination is never partial. After every chunk the transfer checks that the session still
# allows it: authorized, the same session, not past expires_at by this device's clock, and its own registration
# under HKLM:\SOFTWARE\RemoteSupport\Transfers still there (deauthorizing and expiry remove that key). A stopped
# transfer deletes its temporary file and writes an audit entry. A connection lost mid-way leaves the temporary file
# for the next run to resume; that run stops the process of the lost one first.
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
$size = [long]$request.size
$chunkBytes = [int]$request.chunk_bytes
$transferKey = Join-Path -Path $transfersKey -ChildPath ([string]$request.transfer_id)
$result = [ordered]@{
    kind = 'result'
    script_version = 1
    device_time = $null
    outcome = 'failed'
    path = [string]$request.path
    size = $size
    offset = $null
    bytes_written = [long]0
    sha256 = $null
    replaced = $false
    error = $null
    session = $null
    audit_event_id = $null
}
$file = $null
$tempPath = $null
$started = $false
$keepTemp = $false

try {
    $path = [System.IO.Path]::GetFullPath([string]$request.path)
    $result.path = $path
    $policy = Read-TransferPolicy
    if (-not (Test-UnderRoot $path $policy.allowed_roots)) {
        throw (New-Refusal 'path_not_allowed' ("'{0}' is outside the folders this device allows file transfers in (policy FileTransferAllowedRoots: {1})." -f $path, (@($policy.allowed_roots) -join '; ')))
    }
    if ($size -gt $policy.max_size_bytes) {
        throw (New-Refusal 'too_large' ('The file is {0} bytes; this device allows at most {1} bytes per transfer (policy FileTransferMaxSizeBytes).' -f $size, $policy.max_size_bytes))
    }
    if ([System.IO.Directory]::Exists($path)) {
        throw (New-Refusal 'is_directory' ("'{0}' is a folder." -f $path))
    }
    $stop = Register-Transfer $transferKey $request 'to_device' $size
    if ($null -ne $stop) {
        $result.session = $stop.session
        throw (New-Refusal 'session_not_authorized' $stop.message)
    }
    $started = $true

    $parent = [System.IO.Path]::GetDirectoryName($path)
    [void][System.IO.Directory]::CreateDirectory($parent)
    if ([System.IO.File]::Exists($path)) {
        $existing = [System.IO.File]::Open($path, 'Open', 'ReadWrite', 'None')
        $existing.Dispose()
    }
    $tempPath = [System.IO.Path]::Combine($parent, ('~rs-{0}.partial' -f [string]$request.transfer_id))
    # OpenOrCreate, not Create: Create cannot open a hidden file, and this one is hidden.
    $file = New-Object -TypeName System.IO.FileStream -ArgumentList $tempPath, 'OpenOrCreate', 'ReadWrite', 'Read', 1048576
    [System.IO.File]::SetAttributes($tempPath, [System.IO.FileAttributes]::Hidden)
    if (-not [bool]$request.resume -or $file.Length -gt $size) {
        $file.SetLength(0)
    }
    $kept = [long]$file.Length
    $drive = $null
    try {
        $drive = New-Object -TypeName System.IO.DriveInfo -ArgumentList ([System.IO.Path]::GetPathRoot($path))
    }
    catch {
        $drive = $null
    }
    if ($null -ne $drive -and ($size - $kept) -gt $drive.AvailableFreeSpace) {
        throw (New-Refusal 'disk_full' ('There is not enough space on the disk: {0} bytes are needed and {1} bytes are free on {2}.' -f ($size - $kept), $drive.AvailableFreeSpace, $drive.Name))
    }

    # What is kept from an earlier run, and its hash: the controller compares it with the start of its own file.
    $buffer = New-Object -TypeName byte[] -ArgumentList ([Math]::Max(65536, [Math]::Min($chunkBytes, 4194304)))
    $sha = [System.Security.Cryptography.SHA256]::Create()
    Add-FileBytes $sha $file $buffer $kept
    [void]$sha.TransformFinalBlock((New-Object -TypeName byte[] -ArgumentList 0), 0, 0)
    $prefixHash = ConvertTo-Hex $sha.Hash
    $sha.Dispose()
    Write-Message ([ordered]@{ kind = 'ready'; offset = $kept; prefix_sha256 = $prefixHash })

    $start = [long](Read-Line 20)
    if ($start -ne 0 -and $start -ne $kept) {
        throw ('The controller asked to start at byte {0}; only 0 or {1} are possible.' -f $start, $kept)
    }
    # A finished hash cannot go on, so the kept bytes are hashed once more (from the disk cache) into a new one.
    $sha = [System.Security.Cryptography.SHA256]::Create()
    if ($start -eq 0) {
        $file.SetLength(0)
    }
    else {
        Add-FileBytes $sha $file $buffer $start
    }
    $file.Position = $start
    $result.offset = $start

    $remaining = $size - $start
    $sinceCheck = [long]0
    $stop = $null
    while ($remaining -gt 0) {
        # Never past the next chunk boundary: the session is checked after every chunk_bytes exactly.
        $want = [int][Math]::Min([Math]::Min([long]$buffer.Length, [long]($chunkBytes - $sinceCheck)), $remaining)
        $count = $InputStream.Read($buffer, 0, $want)
        if ($count -le 0) {
            throw (New-Refusal 'interrupted' 'The controller stopped sending before the whole file arrived.')
        }
        $file.Write($buffer, 0, $count)
        [void]$sha.TransformBlock($buffer, 0, $count, $null, 0)
        $remaining -= $count
        $result.bytes_written += $count
        $sinceCheck += $count
        if ($sinceCheck -ge $chunkBytes -or $remaining -eq 0) {
            $sinceCheck = 0
            $file.Flush()
            $stop = Get-SessionStop ([string]$request.session_id) $transferKey
            if ($null -ne $stop) {
                break
            }
            Write-Message ([ordered]@{ kind = 'progress'; bytes = $start + $result.bytes_written })
        }
    }
    if ($null -eq $stop) {
        $expected = (Read-Line 64).Trim().ToLowerInvariant()
        [void]$sha.TransformFinalBlock((New-Object -TypeName byte[] -ArgumentList 0), 0, 0)
        $actual = ConvertTo-Hex $sha.Hash
        $result.sha256 = $actual
        $file.Dispose()
        $file = $null
        if ($actual -ne $expected) {
            throw (New-Refusal 'hash_mismatch' ('The file arrived with SHA-256 {0}; the controller sent {1}.' -f $actual, $expected))
        }
        # Renaming is the moment the destination changes: the session must still allow it.
        $stop = Get-SessionStop ([string]$request.session_id) $transferKey
    }
    if ($null -ne $stop) {
        $result.outcome = 'stopped'
        $result.session = $stop.session
        $result.error = [ordered]@{ code = 'session_ended'; message = $stop.message }
    }
    else {
        [System.IO.File]::SetAttributes($tempPath, [System.IO.FileAttributes]::Normal)
        if ([System.IO.File]::Exists($path)) {
            if (-not [bool]$request.overwrite) {
                throw (New-Refusal 'exists' ("The file '{0}' already exists." -f $path))
            }
            # Replace keeps the destination's ACL, owner and attributes, as saving over a file does.
            [System.IO.File]::Replace($tempPath, $path, $null)
            $result.replaced = $true
        }
        else {
            [System.IO.File]::Move($tempPath, $path)
        }
        $tempPath = $null
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
    # Data that is complete or may be resumed stays for the next run; anything else is not left behind.
    $keepTemp = ($failure.code -eq 'interrupted' -or $failure.code -eq 'in_use')
}
finally {
    if ($null -ne $file) {
        $file.Dispose()
    }
}

if ($null -ne $tempPath -and -not $keepTemp -and [System.IO.File]::Exists($tempPath)) {
    Remove-Item -LiteralPath $tempPath -Force
}
if ($started) {
    Unregister-Transfer $transferKey
    $what = 'File transfer to {0}: {1}' -f $env:COMPUTERNAME, [string]$request.source
    if ($result.outcome -eq 'completed') {
        $result.audit_event_id = Write-Audit 'completed' ('{0} -> {1}, {2} bytes, SHA-256 {3}. Successfully sent. Requested by {4}.' -f $what, $result.path, $size, $result.sha256, [string]$request.requested_by)
    }
    else {
        $result.audit_event_id = Write-Audit $result.outcome ('{0} -> {1}: Sending failed after {2} of {3} bytes: {4} Requested by {5}.' -f $what, $result.path, ($result.offset + $result.bytes_written), $size, $result.error.message, [string]$request.requested_by)
    }
}
$result.device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
Write-Message $result
