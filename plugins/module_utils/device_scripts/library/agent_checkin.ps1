# device-script-library: agent_checkin
# The support agent's last check-in, as heartbeat.ps1 writes it (Agent LastCheckIn, a stamp), or $null.

function Read-LastCheckIn {
    if (-not (Test-Path -LiteralPath $agentKey)) {
        return $null
    }
    # GetValue answers $null for a missing value; a missing property read would stop the script under StrictMode.
    $value = (Get-Item -LiteralPath $agentKey).GetValue('LastCheckIn')
    if ($value) {
        return [string]$value
    }
    return $null
}
