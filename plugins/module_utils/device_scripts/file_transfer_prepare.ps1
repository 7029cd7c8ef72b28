# device-script: file_transfer_prepare
# version: 2
# contract: file_transfer_prepare.contract.json
# What a file transfer needs to know before it starts, read on the device, changing nothing: the device-side path
# (a folder as the destination means the file goes into it), what is there (size; SHA-256 only when the size says it
# may be the same file), the temporary file an interrupted run left to resume from, the transfer policy, the free
# space, and the WinRM service's MaxEnvelopeSizekb (the controller sizes its chunks from it). A transfer that cannot
# start is answered with a refusal (code and message), not an error, so the controller can say what to do.
# file_transfer_send.ps1 and file_transfer_receive.ps1 check all of it again before they move a byte.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: stamps
# library: transfer_policy

# --- paths and files ------------------------------------------------------------------------------------------------------
function Resolve-DevicePath([string]$Path) {
    if ($Path -notmatch '^[A-Za-z]:\\' -and $Path -notmatch '^\\\\[^\\]+\\[^\\]+') {
        throw (New-Refusal 'invalid_path' ("'{0}' is not an absolute Windows path (C:\folder\file or \\server\share\file)." -f $Path))
    }
    # Normalises . and .., / and trailing dots and spaces as Windows does; throws for illegal characters, a ':'
    # after the drive, and paths of 260 characters or more.
    return [System.IO.Path]::GetFullPath($Path)
}

function Get-FileSha256([string]$Path, $Roots) {
    # FileShare.Read: a file another program is writing is "in use", as Explorer's copy says too.
    $stream = New-Object -TypeName System.IO.FileStream -ArgumentList $Path, 'Open', 'Read', 'Read', 1048576
    try {
        [void](Assert-OpenedUnderRoot $stream $Path $Roots)
        $sha = [System.Security.Cryptography.SHA256]::Create()
        try {
            return ConvertTo-Hex $sha.ComputeHash($stream)
        }
        finally {
            $sha.Dispose()
        }
    }
    finally {
        $stream.Dispose()
    }
}

function Get-MaxEnvelopeSizeKb {
    # The WSMan: drive needs an administrator; without it the controller falls back to a size every Windows takes.
    try {
        $value = [int](Get-Item -LiteralPath 'WSMan:\localhost\MaxEnvelopeSizekb').Value
        if ($value -ge 1) {
            return $value
        }
    }
    catch {
        return $null
    }
    return $null
}

function Get-FreeSpace([string]$Path) {
    try {
        $drive = New-Object -TypeName System.IO.DriveInfo -ArgumentList ([System.IO.Path]::GetPathRoot($Path))
        return [long]$drive.AvailableFreeSpace
    }
    catch {
        # A network share (\\server\share) has no DriveInfo: its free space is not known here.
        return $null
    }
}

function Get-FileState([string]$Path, $HashIfSize, $Roots) {
    $state = [ordered]@{ exists = $false; is_directory = $false; size = $null; sha256 = $null; last_write_time = $null; read_only = $false }
    if ([System.IO.Directory]::Exists($Path)) {
        $state.exists = $true
        $state.is_directory = $true
        return $state
    }
    if (-not [System.IO.File]::Exists($Path)) {
        return $state
    }
    $info = New-Object -TypeName System.IO.FileInfo -ArgumentList $Path
    $state.exists = $true
    $state.size = [long]$info.Length
    $state.last_write_time = $info.LastWriteTimeUtc.ToString($stampFormat, $invariant)
    $state.read_only = [bool]$info.IsReadOnly
    if ($null -ne $HashIfSize -and [long]$HashIfSize -eq $state.size) {
        $state.sha256 = Get-FileSha256 $Path $Roots
    }
    return $state
}

function Assert-Writable([string]$Path, $Roots) {
    # Opening an existing destination for writing, sharing nothing, changes nothing but says now what renaming the
    # transferred file over it would meet at the end: a program holding it open, a read-only file, an ACL.
    $stream = [System.IO.File]::Open($Path, 'Open', 'ReadWrite', 'None')
    try {
        [void](Assert-OpenedUnderRoot $stream $Path $Roots)
    }
    finally {
        $stream.Dispose()
    }
}

function Assert-Readable([string]$Path, $Roots) {
    $stream = New-Object -TypeName System.IO.FileStream -ArgumentList $Path, 'Open', 'Read', 'Read', 4096
    try {
        [void](Assert-OpenedUnderRoot $stream $Path $Roots)
    }
    finally {
        $stream.Dispose()
    }
}

# --- what the transfer would meet -------------------------------------------------------------------------------------------
$request = $InputObject
$direction = [string]$request.direction
$policy = Read-TransferPolicy
$result = [ordered]@{
    script_version = 2
    device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
    max_envelope_size_kb = Get-MaxEnvelopeSizeKb
    policy = $policy
    path = $null
    file = $null
    parent_exists = $false
    partial = $null
    free_space_bytes = $null
    refusal = $null
}

try {
    Assert-PathForm ([string]$request.path)
    $path = Resolve-DevicePath ([string]$request.path)
    if ($direction -eq 'to_device' -and (([string]$request.path).EndsWith('\') -or [System.IO.Directory]::Exists($path))) {
        # A folder as the destination: the file keeps its name inside it.
        $joined = [System.IO.Path]::Combine($path, [string]$request.file_name)
        Assert-PathForm $joined
        $path = Resolve-DevicePath $joined
    }
    $result.path = $path
    Assert-PathAllowed $path $policy
    $parent = [System.IO.Path]::GetDirectoryName($path)
    $result.parent_exists = ($null -ne $parent -and [System.IO.Directory]::Exists($parent))
    $result.free_space_bytes = Get-FreeSpace $path
    $result.file = Get-FileState $path $request.hash_if_size $policy.allowed_roots
    if ($direction -eq 'to_device') {
        if ($result.file.is_directory) {
            throw (New-Refusal 'is_directory' ("'{0}' is a folder." -f $path))
        }
        $size = [long]$request.size
        Assert-SizeAllowed $size $policy
        $partialPath = [System.IO.Path]::Combine($parent, ('~rs-{0}.partial' -f [string]$request.transfer_id))
        if ([System.IO.File]::Exists($partialPath)) {
            $result.partial = [ordered]@{ path = $partialPath; size = [long](New-Object -TypeName System.IO.FileInfo -ArgumentList $partialPath).Length }
        }
        $needed = $size
        if ($null -ne $result.partial -and $result.partial.size -le $size) {
            $needed = $size - $result.partial.size
        }
        if ($null -ne $result.free_space_bytes -and $needed -gt $result.free_space_bytes) {
            throw (New-Refusal 'disk_full' ('There is not enough space on the disk: {0} bytes are needed and {1} bytes are free on {2}.' -f $needed, $result.free_space_bytes, [System.IO.Path]::GetPathRoot($path)))
        }
        if ($result.file.exists) {
            Assert-Writable $path $policy.allowed_roots
        }
    }
    else {
        if (-not $result.file.exists) {
            throw (New-Refusal 'not_found' ("Could not find file '{0}'." -f $path))
        }
        if ($result.file.is_directory) {
            throw (New-Refusal 'is_directory' ("'{0}' is a folder." -f $path))
        }
        Assert-SizeAllowed $result.file.size $policy
        Assert-Readable $path $policy.allowed_roots
    }
}
catch {
    $failure = Get-Failure $_.Exception
    if ($null -eq $failure) {
        throw
    }
    $result.refusal = $failure
}

ConvertTo-Json -InputObject $result -Compress -Depth 5
