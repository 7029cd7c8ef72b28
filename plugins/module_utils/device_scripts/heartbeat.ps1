# device-script: heartbeat
# version: 1
# contract: heartbeat.contract.json
# The support agent's check-in: writes the device's clock (UTC) to HKLM:\SOFTWARE\RemoteSupport\Agent LastCheckIn,
# which device_info reads as the date of last activity. Run every minute as SYSTEM by the scheduled task
# RemoteSupport-Heartbeat (installed by install_agent.ps1) with -File and no arguments.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

$agentKey = 'HKLM:\SOFTWARE\RemoteSupport\Agent'
$invariant = [System.Globalization.CultureInfo]::InvariantCulture
$now = [DateTime]::UtcNow.ToString('yyyy-MM-ddTHH:mm:ssZ', $invariant)

if (-not (Test-Path -LiteralPath $agentKey)) {
    New-Item -Path $agentKey -Force | Out-Null
}
Set-ItemProperty -LiteralPath $agentKey -Name 'LastCheckIn' -Value $now -Type String

$result = [ordered]@{
    script_version = 1
    last_checkin = $now
}
ConvertTo-Json -InputObject $result -Compress
