# device-script: file_transfer_receive
# version: 2
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
# says), and its size and last write time, read through the handle, are compared at the end as well. Neither the
# source nor any folder on its way may be a junction, symbolic link or mount point, and the opened handle's final
# path must lie under an allowed root and stay there after every frame: a link swapped in after the checks is caught. After every frame the transfer checks
# that the session still allows it, exactly as file_transfer_send.ps1 does, and stops cleanly when it does not.
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
$chunkBytes = [int]$request.chunk_bytes
$transferKey = Join-Path -Path $transfersKey -ChildPath ([string]$request.transfer_id)
$result = [ordered]@{
    kind = 'result'
    script_version = 2
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
    $policy = Resolve-TransferPath $result
    $path = $result.path
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
    $pinned = Assert-OpenedUnderRoot $file $path $policy.allowed_roots
    $size = [long]$file.Length
    $lastWrite = [RemoteSupport.FileHandle]::LastWriteTimeUtc($file.SafeFileHandle)
    $result.size = $size
    Assert-SizeAllowed $size $policy
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
        Assert-StillAt $file $path $pinned
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
        Assert-StillAt $file $path $pinned
        if ([long]$file.Length -ne $size -or [RemoteSupport.FileHandle]::LastWriteTimeUtc($file.SafeFileHandle) -ne $lastWrite) {
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
    $what = 'Support session {0}: file transfer from {1}: {2} -> {3}' -f [string]$request.session_id, $env:COMPUTERNAME, $result.path, [string]$request.destination
    if ($result.outcome -eq 'completed') {
        $result.audit_event_id = Write-TransferAudit 'completed' ('{0}, {1} bytes, SHA-256 {2}. Successfully received. Requested by {3}.' -f $what, $result.size, $result.sha256, [string]$request.requested_by)
    }
    else {
        $result.audit_event_id = Write-TransferAudit $result.outcome ('{0}: Sending failed after {1} of {2} bytes: {3} Requested by {4}.' -f $what, ($result.offset + $result.bytes_sent), $result.size, $result.error.message, [string]$request.requested_by)
    }
}
$result.device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
Write-Message $result
