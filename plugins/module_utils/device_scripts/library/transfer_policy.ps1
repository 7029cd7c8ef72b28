# device-script-library: transfer_policy
# What every file-transfer script checks before it moves a byte (file_transfer_prepare.ps1, file_transfer_send.ps1,
# file_transfer_receive.ps1): failures with a name the controller turns into a message, the transfer policy with
# the rules of support_policy.effective_policy, and confinement by what a path is, not how it reads: no device
# namespace, alternate data stream or reserved name in its text, no junction, symbolic link or mount point among its
# existing components, and the final path of the handle actually opened under an allowed root (docs/file-transfer.md).

# The policy's defaults (plugins/module_utils/support_policy.py is the one place that names them).
$defaultAllowedRoots = @('C:\Users')
$defaultMaxSizeBytes = [long]4294967296

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

# --- what a path is ---------------------------------------------------------------------------------------------------------
# Names Windows keeps for devices, in any folder and with any extension (NUL.txt is NUL too).
$reservedNames = @('CON', 'PRN', 'AUX', 'NUL', 'CONIN$', 'CONOUT$')
foreach ($port in @('COM', 'LPT')) {
    foreach ($digit in @('1', '2', '3', '4', '5', '6', '7', '8', '9', [string][char]0xB9, [string][char]0xB2, [string][char]0xB3)) {
        $reservedNames += $port + $digit
    }
}

function Assert-PathForm([string]$Path) {
    # What the text of a path may not be, before Windows makes anything of it; each refusal names its rule.
    $text = $Path.Replace('/', '\')
    # \\?\, \\.\ and the NT form: backslash, two question marks, backslash (written as a pattern, since two
    # question marks side by side read as PowerShell 7 syntax).
    if ($text -match '^\\\\[.?]\\' -or $text -match '^\\\?\?\\') {
        throw (New-Refusal 'device_path' ("'{0}' is written in the Windows device namespace (\\?\ or \\.\): file transfers take ordinary paths only, such as C:\Users\name\file.txt." -f $Path))
    }
    if ($text -match '^[A-Za-z]:\\') {
        $rest = $text.Substring(3)
    }
    elseif ($text -match '^\\\\[^\\]+\\[^\\]+') {
        $rest = ($text.Substring(2).Split('\') | Select-Object -Skip 2) -join '\'
    }
    else {
        return
    }
    foreach ($part in $rest.Split('\')) {
        if ($part.Contains(':')) {
            throw (New-Refusal 'alternate_stream' ("'{0}' names an alternate data stream ('{1}'): file transfers move a file's main content only." -f $Path, $part))
        }
        $name = $part.TrimEnd('. '.ToCharArray()).Split('.')[0].TrimEnd(' ').ToUpperInvariant()
        if ($reservedNames -contains $name) {
            throw (New-Refusal 'reserved_name' ("'{0}' contains '{1}', a name Windows reserves for a device (CON, PRN, AUX, NUL, COM1-COM9, LPT1-LPT9), whatever its extension: it can never be a file." -f $Path, $part))
        }
    }
}

function Assert-PathAllowed([string]$Path, $Policy) {
    # Before anything is read: a file outside the allowed folders, or behind a link, is not even looked at.
    if (-not (Test-UnderRoot $Path $Policy.allowed_roots)) {
        throw (New-Refusal 'path_not_allowed' ("'{0}' is outside the folders this device allows file transfers in (policy FileTransferAllowedRoots: {1})." -f $Path, (@($Policy.allowed_roots) -join '; ')))
    }
    Assert-NoReparsePoint $Path $Policy.allowed_roots
}

function Resolve-TransferPath($Result) {
    # The request's path (Result.path) made full and checked before anything is read; Result.path is the full path
    # from here on, also in a refusal. Returns the policy it was checked against.
    Assert-PathForm ([string]$Result.path)
    $path = [System.IO.Path]::GetFullPath([string]$Result.path)
    $Result.path = $path
    $policy = Read-TransferPolicy
    Assert-PathAllowed $path $policy
    return $policy
}

function Assert-SizeAllowed([long]$Size, $Policy) {
    if ($Size -gt $Policy.max_size_bytes) {
        throw (New-Refusal 'too_large' ('The file is {0} bytes; this device allows at most {1} bytes per transfer (policy FileTransferMaxSizeBytes).' -f $Size, $Policy.max_size_bytes))
    }
}

function Get-RootOf([string]$Path, $Roots) {
    foreach ($root in $Roots) {
        if ($Path.StartsWith(([string]$root).TrimEnd('\') + '\', [System.StringComparison]::OrdinalIgnoreCase)) {
            return [string]$root
        }
    }
    return $null
}

function Assert-NoReparsePoint([string]$Path, $Roots) {
    # Every existing component of a full path, from the drive down: none may be a junction, symbolic link or mount
    # point. GetAttributes reads the component itself, not what a link points at; a missing one ends the walk.
    $volume = [System.IO.Path]::GetPathRoot($Path)
    $walked = $volume.TrimEnd('\')
    foreach ($part in $Path.Substring($volume.Length).Split('\')) {
        if (-not $part) {
            continue
        }
        $walked = $walked + '\' + $part
        try {
            $attributes = [System.IO.File]::GetAttributes($walked)
        }
        catch [System.IO.FileNotFoundException], [System.IO.DirectoryNotFoundException] {
            return
        }
        if ([int]($attributes -band [System.IO.FileAttributes]::ReparsePoint) -ne 0) {
            $root = Get-RootOf $Path $Roots
            if ($null -ne $root -and ($root.TrimEnd('\') + '\').StartsWith($walked + '\', [System.StringComparison]::OrdinalIgnoreCase)) {
                throw (New-Refusal 'reparse_point' ("The allowed folder '{0}' is not a real folder: '{1}' is a junction, symbolic link or mount point (policy FileTransferAllowedRoots). File transfers never follow links." -f $root, $walked))
            }
            throw (New-Refusal 'reparse_point' ("'{0}' goes through '{1}', a junction, symbolic link or mount point: file transfers never follow links." -f $Path, $walked))
        }
        if ([int]($attributes -band [System.IO.FileAttributes]::Directory) -eq 0) {
            return
        }
    }
}

# Where an open handle really is (GetFinalPathNameByHandle: links resolved, renames followed, long names), its last
# write time, and deleting through it (FileDispositionInfo): what a name checked a moment ago cannot promise.
if (-not ('RemoteSupport.FileHandle' -as [type])) {
    Add-Type -TypeDefinition @'
using System;
using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace RemoteSupport {
    public static class FileHandle {
        [DllImport("kernel32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        static extern uint GetFinalPathNameByHandleW(SafeFileHandle file, StringBuilder path, uint length, uint flags);

        [DllImport("kernel32.dll", SetLastError = true)]
        static extern bool GetFileTime(SafeFileHandle file, out long created, out long accessed, out long written);

        [DllImport("kernel32.dll", SetLastError = true)]
        static extern bool SetFileInformationByHandle(SafeFileHandle file, int infoClass, ref byte deleteFile, uint size);

        public static string FinalPath(SafeFileHandle file) {
            StringBuilder path = new StringBuilder(1024);
            uint length = GetFinalPathNameByHandleW(file, path, (uint)path.Capacity, 0);
            if (length >= path.Capacity) {
                path.Capacity = (int)length + 1;
                length = GetFinalPathNameByHandleW(file, path, (uint)path.Capacity, 0);
            }
            if (length == 0) {
                throw new Win32Exception(Marshal.GetLastWin32Error());
            }
            string text = path.ToString(0, (int)length);
            if (text.StartsWith(@"\\?\UNC\")) {
                return @"\\" + text.Substring(8);
            }
            if (text.StartsWith(@"\\?\")) {
                return text.Substring(4);
            }
            return text;
        }

        public static DateTime LastWriteTimeUtc(SafeFileHandle file) {
            long created, accessed, written;
            if (!GetFileTime(file, out created, out accessed, out written)) {
                throw new Win32Exception(Marshal.GetLastWin32Error());
            }
            return DateTime.FromFileTimeUtc(written);
        }

        public static void DeleteOnClose(SafeFileHandle file) {
            byte delete = 1;
            if (!SetFileInformationByHandle(file, 4, ref delete, 1)) {
                throw new Win32Exception(Marshal.GetLastWin32Error());
            }
        }
    }
}
'@
}

function Assert-OpenedUnderRoot($Stream, [string]$Path, $Roots) {
    # The handle's final path under an allowed root: a link put in the way after the checks shows here. Returns that
    # final path, which the handle must keep (Assert-StillAt).
    $final = [RemoteSupport.FileHandle]::FinalPath($Stream.SafeFileHandle)
    if ($null -eq (Get-RootOf $final $Roots)) {
        throw (New-Refusal 'path_changed' ("'{0}' was opened as '{1}', outside the folders this device allows file transfers in: a link was put in its way after it was checked. Nothing was transferred." -f $Path, $final))
    }
    return $final
}

function Assert-StillAt($Stream, [string]$Path, [string]$Pinned) {
    # The open file is where it was when it was opened: no folder on its way was moved or replaced by a link.
    $final = [RemoteSupport.FileHandle]::FinalPath($Stream.SafeFileHandle)
    if (-not [string]::Equals($final, $Pinned, [System.StringComparison]::OrdinalIgnoreCase)) {
        throw (New-Refusal 'path_changed' ("'{0}' moved to '{1}' while it was transferred: a folder on its way was moved or replaced by a link. The transfer was stopped." -f $Path, $final))
    }
}

# --- hashes -----------------------------------------------------------------------------------------------------------
function ConvertTo-Hex([byte[]]$Bytes) {
    return ([System.BitConverter]::ToString($Bytes) -replace '-', '').ToLowerInvariant()
}
