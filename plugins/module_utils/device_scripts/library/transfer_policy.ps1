# device-script-library: transfer_policy
# What every file-transfer script checks before it moves a byte (file_transfer_prepare.ps1, file_transfer_send.ps1,
# file_transfer_receive.ps1): failures with a name the controller turns into a message, the transfer policy with
# the rules of support_policy.effective_policy, and whether a path is under an allowed root.

$policyKey = 'HKLM:\SOFTWARE\RemoteSupport\Policy'
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

# --- hashes -----------------------------------------------------------------------------------------------------------
function ConvertTo-Hex([byte[]]$Bytes) {
    return ([System.BitConverter]::ToString($Bytes) -replace '-', '').ToLowerInvariant()
}
