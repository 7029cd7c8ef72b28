# device-script-library: partial_files
# The temporary files a transfer to the device writes beside its destination (~rs-<transfer_id>.partial) and what
# becomes of those a lost connection abandons. The agent's heartbeat notes the folder of every transfer it sees
# running (HKLM:\SOFTWARE\RemoteSupport\Transfers), and once a day removes, in those folders only, the temporary
# files untouched for a day; uninstall_agent.ps1 removes them all. Nothing walks a folder tree: the default transfer
# root is C:\Users, and a walk over it as SYSTEM would be slow and would meet the links users can make.

$transferFoldersValue = 'TransferFolders'
$partialPattern = '^~rs-[A-Za-z0-9_-]{1,64}\.partial$'
# The most folders kept; the oldest noted go first.
$transferFoldersKept = 256

function Read-TransferFolders {
    if (-not (Test-Path -LiteralPath $agentKey)) {
        return @()
    }
    $value = (Get-Item -LiteralPath $agentKey).GetValue($transferFoldersValue)
    if ($null -eq $value) {
        return @()
    }
    return @([string[]]$value)
}

function Save-TransferFolders([string[]]$Folders) {
    if (-not (Test-Path -LiteralPath $agentKey)) {
        New-Item -Path $agentKey -Force | Out-Null
    }
    Set-ItemProperty -LiteralPath $agentKey -Name $transferFoldersValue -Value ([string[]]$Folders) -Type MultiString
}

function Add-RunningTransferFolders {
    # The destination folder of every transfer to the device now registered; returns the folders now noted.
    $folders = New-Object -TypeName System.Collections.ArrayList
    foreach ($folder in @(Read-TransferFolders)) {
        [void]$folders.Add($folder)
    }
    $transfers = $transfersKey
    if (Test-Path -LiteralPath $transfers) {
        foreach ($entry in @(Get-ChildItem -LiteralPath $transfers)) {
            $path = [string]$entry.GetValue('Path', '')
            if ([string]$entry.GetValue('Direction', '') -ne 'to_device' -or $path -eq '') {
                continue
            }
            $folder = [System.IO.Path]::GetDirectoryName($path)
            if ($null -ne $folder -and -not ($folders -contains $folder)) {
                [void]$folders.Add($folder)
            }
        }
    }
    while ($folders.Count -gt $transferFoldersKept) {
        $folders.RemoveAt(0)
    }
    Save-TransferFolders ([string[]]$folders.ToArray())
    return @($folders.ToArray())
}

function Test-ReparsePoint([string]$Path) {
    $attributes = [System.IO.File]::GetAttributes($Path)
    return ($attributes -band [System.IO.FileAttributes]::ReparsePoint) -ne 0
}

function Remove-PartialFiles([string[]]$Folders, [int]$OlderThanSeconds) {
    # Removes ~rs-*.partial files directly in each folder, last written more than OlderThanSeconds ago (0: all).
    # A folder that is itself a junction or link is passed over, and so is an entry that is one: a user who swapped
    # a folder for a link to somewhere else gets nothing removed there. Returns the paths removed.
    $removed = @()
    $cutoff = [DateTime]::UtcNow.AddSeconds(-$OlderThanSeconds)
    foreach ($folder in $Folders) {
        if (-not [System.IO.Directory]::Exists($folder) -or (Test-ReparsePoint $folder)) {
            continue
        }
        foreach ($path in @([System.IO.Directory]::GetFiles($folder, '~rs-*.partial'))) {
            $name = [System.IO.Path]::GetFileName($path)
            if ($name -notmatch $partialPattern -or (Test-ReparsePoint $path)) {
                continue
            }
            if ($OlderThanSeconds -gt 0 -and [System.IO.File]::GetLastWriteTimeUtc($path) -gt $cutoff) {
                continue
            }
            try {
                [System.IO.File]::Delete($path)
                $removed += $path
            }
            catch [System.IO.IOException] {
                # In use: a transfer is writing it right now. The next run tries again.
                continue
            }
        }
    }
    return $removed
}
