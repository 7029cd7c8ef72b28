# device-script: file_transfer_prepare
# version: 1
# contract: file_transfer_prepare.contract.json
# What a file transfer needs to know before it starts, read on the device, changing nothing: the device-side path
# (a folder as the destination means the file goes into it), what is there (size; SHA-256 only when the size says it
# may be the same file), the temporary file an interrupted run left to resume from, the transfer policy, the free
# space, and the WinRM service's MaxEnvelopeSizekb (the controller sizes its chunks from it). A transfer that cannot
# start is answered with a refusal (code and message), not an error, so the controller can say what to do.
# file_transfer_send.ps1 and file_transfer_receive.ps1 check all of it again before they move a byte.
param($InputObject)

$ErrorActionPreference = 'Stop'

$policyKey = 'HKLM:\SOFTWARE\RemoteSupport\Policy'
# The policy's defaults (plugins/module_utils/support_policy.py is the one place that names them).
$defaultAllowedRoots = @('C:\Users')
$defaultMaxSizeBytes = [long]4294967296
$stampFormat = 'yyyy-MM-ddTHH:mm:ssZ'
$invariant = [System.Globalization.CultureInfo]::InvariantCulture

# --- failures with a name -----------------------------------------------------------------------------------------------
function New-Refusal([string]$Code, [string]$Message) {
    $exception = New-Object -TypeName System.InvalidOperationException -ArgumentList $Message
    $exception.Data['code'] = $Code
    return $exception
}

function Get-Failure($Exception) {
    # .NET exceptions reach PowerShell wrapped ("Exception calling X with N argument(s)"); the inner one says what
    # Windows said. Returns @{code; message}, or $null for a failure this script cannot name.
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

# --- the policy (the rules of support_policy.effective_policy) ---------------------------------------------------------
function ConvertTo-Root($Text) {
    # An allowed root as support_policy.normalize_root stores it, or $null for an entry that is not an absolute folder.
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
    $policy = [ordered]@{ allowed_roots = $defaultAllowedRoots; max_size_bytes = $defaultMaxSizeBytes; source = 'default' }
    if (-not (Test-Path -LiteralPath $policyKey)) {
        return $policy
    }
    $policy.source = 'device'
    $key = Get-Item -LiteralPath $policyKey
    if ($key.GetValueNames() -contains 'FileTransferMaxSizeBytes') {
        $kind = [string]$key.GetValueKind('FileTransferMaxSizeBytes')
        $number = [long]0
        if ($kind -ne 'MultiString' -and $kind -ne 'Binary' -and [long]::TryParse(([string]$key.GetValue('FileTransferMaxSizeBytes')).Trim(), [ref]$number) -and $number -ge 1) {
            $policy.max_size_bytes = $number
        }
    }
    if ($key.GetValueNames() -contains 'FileTransferAllowedRoots' -and [string]$key.GetValueKind('FileTransferAllowedRoots') -eq 'MultiString') {
        # Present: exactly these (an empty list allows no folder); entries that are not absolute folders are ignored.
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

# --- paths and files ------------------------------------------------------------------------------------------------------
function Resolve-DevicePath([string]$Path) {
    if ($Path -notmatch '^[A-Za-z]:\\' -and $Path -notmatch '^\\\\[^\\]+\\[^\\]+') {
        throw (New-Refusal 'invalid_path' ("'{0}' is not an absolute Windows path (C:\folder\file or \\server\share\file)." -f $Path))
    }
    # Normalises . and .., / and trailing dots and spaces as Windows does; throws for illegal characters, a ':'
    # after the drive, and paths of 260 characters or more.
    return [System.IO.Path]::GetFullPath($Path)
}

function ConvertTo-Hex([byte[]]$Bytes) {
    return ([System.BitConverter]::ToString($Bytes) -replace '-', '').ToLowerInvariant()
}

function Get-FileSha256([string]$Path) {
    # FileShare.Read: a file another program is writing is "in use", as Explorer's copy says too.
    $stream = New-Object -TypeName System.IO.FileStream -ArgumentList $Path, 'Open', 'Read', 'Read', 1048576
    try {
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

function Get-FileState([string]$Path, $HashIfSize) {
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
        $state.sha256 = Get-FileSha256 $Path
    }
    return $state
}

function Assert-Writable([string]$Path) {
    # Opening an existing destination for writing, sharing nothing, changes nothing but says now what renaming the
    # transferred file over it would meet at the end: a program holding it open, a read-only file, an ACL.
    $stream = [System.IO.File]::Open($Path, 'Open', 'ReadWrite', 'None')
    $stream.Dispose()
}

function Assert-Readable([string]$Path) {
    $stream = New-Object -TypeName System.IO.FileStream -ArgumentList $Path, 'Open', 'Read', 'Read', 4096
    $stream.Dispose()
}

# --- what the transfer would meet -------------------------------------------------------------------------------------------
$request = $InputObject
$direction = [string]$request.direction
$policy = Read-TransferPolicy
$result = [ordered]@{
    script_version = 1
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
    $path = Resolve-DevicePath ([string]$request.path)
    if ($direction -eq 'to_device' -and (([string]$request.path).EndsWith('\') -or [System.IO.Directory]::Exists($path))) {
        # A folder as the destination: the file keeps its name inside it.
        $path = Resolve-DevicePath ([System.IO.Path]::Combine($path, [string]$request.file_name))
    }
    $result.path = $path
    # Before anything is read: a file outside the allowed folders is not even looked at.
    if (-not (Test-UnderRoot $path $policy.allowed_roots)) {
        throw (New-Refusal 'path_not_allowed' ("'{0}' is outside the folders this device allows file transfers in (policy FileTransferAllowedRoots: {1})." -f $path, (@($policy.allowed_roots) -join '; ')))
    }
    $parent = [System.IO.Path]::GetDirectoryName($path)
    $result.parent_exists = ($null -ne $parent -and [System.IO.Directory]::Exists($parent))
    $result.free_space_bytes = Get-FreeSpace $path
    $result.file = Get-FileState $path $request.hash_if_size
    if ($direction -eq 'to_device') {
        if ($result.file.is_directory) {
            throw (New-Refusal 'is_directory' ("'{0}' is a folder." -f $path))
        }
        $size = [long]$request.size
        if ($size -gt $policy.max_size_bytes) {
            throw (New-Refusal 'too_large' ('The file is {0} bytes; this device allows at most {1} bytes per transfer (policy FileTransferMaxSizeBytes).' -f $size, $policy.max_size_bytes))
        }
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
            Assert-Writable $path
        }
    }
    else {
        if (-not $result.file.exists) {
            throw (New-Refusal 'not_found' ("Could not find file '{0}'." -f $path))
        }
        if ($result.file.is_directory) {
            throw (New-Refusal 'is_directory' ("'{0}' is a folder." -f $path))
        }
        if ($result.file.size -gt $policy.max_size_bytes) {
            throw (New-Refusal 'too_large' ('The file is {0} bytes; this device allows at most {1} bytes per transfer (policy FileTransferMaxSizeBytes).' -f $result.file.size, $policy.max_size_bytes))
        }
        Assert-Readable $path
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
