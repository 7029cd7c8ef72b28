# device-script: heartbeat
# version: 2
# contract: heartbeat.contract.json
# The support agent's check-in: writes the device's clock (UTC) to HKLM:\SOFTWARE\RemoteSupport\Agent LastCheckIn,
# which device_info reads as the date of last activity. Run every minute as SYSTEM by the scheduled task
# RemoteSupport-Heartbeat (installed by install_agent.ps1) with -File and no arguments.
# It also looks after what interrupted transfers to the device leave behind (library partial_files): every run
# notes the folders transfers are writing into, and once a day it removes the ~rs-*.partial files there that no
# transfer has touched for a day. The heartbeat is the one piece that runs on the device without a controller, so
# a device whose controller never comes back is cleaned all the same.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: stamps
# library: partial_files

$day = 86400
$nowUtc = [DateTime]::UtcNow
$now = $nowUtc.ToString($stampFormat, $invariant)

if (-not (Test-Path -LiteralPath $agentKey)) {
    New-Item -Path $agentKey -Force | Out-Null
}
Set-ItemProperty -LiteralPath $agentKey -Name 'LastCheckIn' -Value $now -Type String

# The check-in is written first: a cleanup that fails must not make the device look idle.
$removed = @()
$cleaned = $false
$cleanupError = $null
try {
    $folders = @(Add-RunningTransferFolders)
    $last = [string](Get-Item -LiteralPath $agentKey).GetValue('PartialFilesCleanedAt', '')
    $lastTime = [DateTime]::MinValue
    $parsed = [DateTime]::TryParseExact($last, $stampFormat, $invariant, [System.Globalization.DateTimeStyles]::AdjustToUniversal, [ref]$lastTime)
    if (-not $parsed -or ($nowUtc - $lastTime).TotalSeconds -ge $day -or $lastTime -gt $nowUtc) {
        $removed = @(Remove-PartialFiles $folders $day)
        # A folder stays noted while a temporary file is left in it; the others are forgotten.
        $kept = @($folders | Where-Object { [System.IO.Directory]::Exists($_) -and @([System.IO.Directory]::GetFiles($_, '~rs-*.partial')).Count -gt 0 })
        Save-TransferFolders ([string[]]$kept)
        Set-ItemProperty -LiteralPath $agentKey -Name 'PartialFilesCleanedAt' -Value $now -Type String
        $cleaned = $true
    }
}
catch {
    $cleanupError = $_.Exception.Message
}

$result = [ordered]@{
    script_version = 2
    last_checkin = $now
    partial_files_cleaned = $cleaned
    partial_files_removed = @($removed)
    partial_files_error = $cleanupError
}
ConvertTo-Json -InputObject $result -Compress
