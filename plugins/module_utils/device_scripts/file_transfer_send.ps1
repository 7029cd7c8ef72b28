# device-script: file_transfer_send
# version: 2
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
# hash matches, so the destination is never partial. Neither the destination nor any folder on its way may be a
# junction, symbolic link or mount point; the temporary file's handle must lie under an allowed root once opened and
# stay where it was opened after every chunk, so a link swapped in after the checks stops the transfer. After every chunk the transfer checks that the session still
# allows it: authorized, the same session, not past expires_at by this device's clock, and its own registration
# under HKLM:\SOFTWARE\RemoteSupport\Transfers still there (deauthorizing and expiry remove that key). A stopped
# transfer deletes its temporary file and writes an audit entry. A connection lost mid-way leaves the temporary file
# for the next run to resume; that run stops the process of the lost one first.
param($InputObject, $InputStream, $OutputStream)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: stamps
# library: audit_event
# library: transfer_policy
# library: session_lock
# library: session_record
# library: transfer_session

# --- the transfer -----------------------------------------------------------------------------------------------------------
$request = $InputObject
$size = [long]$request.size
$chunkBytes = [int]$request.chunk_bytes
$transferKey = Join-Path -Path $transfersKey -ChildPath ([string]$request.transfer_id)
$result = [ordered]@{
    kind = 'result'
    script_version = 2
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
    $policy = Resolve-TransferPath $result
    $path = $result.path
    Assert-SizeAllowed $size $policy
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
    # OpenOrCreate, not Create: Create cannot open a hidden file, and this one is hidden. Delete access: a temporary
    # file that must go is deleted through this handle, never by a name that may lead through a link by then.
    $file = New-Object -TypeName System.IO.FileStream -ArgumentList $tempPath, 'OpenOrCreate', ([System.Security.AccessControl.FileSystemRights]'Read, Write, Delete, Synchronize'), 'Read', 1048576, 'None'
    $pinned = Assert-OpenedUnderRoot $file $path $policy.allowed_roots
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
            Assert-StillAt $file $path $pinned
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
        # The last moment names are used: the file is still where it was opened, and no link stands in the
        # destination's way now either.
        Assert-StillAt $file $path $pinned
        Assert-NoReparsePoint $path $policy.allowed_roots
        $file.Dispose()
        $file = $null
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

if ($null -ne $file) {
    try {
        if ($null -ne $tempPath -and -not $keepTemp) {
            # Through the handle: its name may lead through a link by now.
            [RemoteSupport.FileHandle]::DeleteOnClose($file.SafeFileHandle)
        }
    }
    catch {
        # The result already says why the transfer failed; a temporary file left is taken up or replaced by the
        # next run of the same transfer.
        $keepTemp = $true
    }
    finally {
        $file.Dispose()
    }
}
elseif ($null -ne $tempPath -and -not $keepTemp -and [System.IO.File]::Exists($tempPath)) {
    # Closed before the rename, which failed: its name was checked at that moment.
    Remove-Item -LiteralPath $tempPath -Force
}
if ($started) {
    Unregister-Transfer $transferKey
    $what = 'Support session {0}: file transfer to {1}: {2}' -f [string]$request.session_id, $env:COMPUTERNAME, [string]$request.source
    if ($result.outcome -eq 'completed') {
        $result.audit_event_id = Write-TransferAudit 'completed' ('{0} -> {1}, {2} bytes, SHA-256 {3}. Successfully sent. Requested by {4}.' -f $what, $result.path, $size, $result.sha256, [string]$request.requested_by)
    }
    else {
        $result.audit_event_id = Write-TransferAudit $result.outcome ('{0} -> {1}: Sending failed after {2} of {3} bytes: {4} Requested by {5}.' -f $what, $result.path, ($result.offset + $result.bytes_written), $size, $result.error.message, [string]$request.requested_by)
    }
}
$result.device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
Write-Message $result
