# device-script: get_support_policy
# version: 1
# contract: get_support_policy.contract.json
# Reads the support policy as stored: every value under HKLM:\SOFTWARE\RemoteSupport\Policy with its registry
# kind, and the Remote Desktop shadow policy (HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services,
# value Shadow). Changes nothing. The controller applies the defaults and the rules (docs/support-policy.md), so
# this script reports what is there, not what it means.
param($InputObject)

$ErrorActionPreference = 'Stop'

$policyKey = 'HKLM:\SOFTWARE\RemoteSupport\Policy'
$shadowKey = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services'
$stampFormat = 'yyyy-MM-ddTHH:mm:ssZ'
$invariant = [System.Globalization.CultureInfo]::InvariantCulture

function ConvertTo-ValueRecord($Key, [string]$Name) {
    # Kind and data of one value, as JSON can carry them. REG_EXPAND_SZ is read unexpanded (what is stored), a
    # REG_DWORD as the unsigned number regedit shows, binary data as base64.
    $kind = [string]$Key.GetValueKind($Name)
    $options = [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames
    $raw = $Key.GetValue($Name, $null, $options)
    $data = $null
    if ($kind -eq 'DWord') {
        $data = [long][BitConverter]::ToUInt32([BitConverter]::GetBytes([int]$raw), 0)
    }
    elseif ($kind -eq 'QWord') {
        $data = [long]$raw
    }
    elseif ($kind -eq 'MultiString') {
        $data = @([string[]]$raw)
    }
    elseif ($kind -eq 'Binary') {
        $data = [Convert]::ToBase64String([byte[]]$raw)
    }
    elseif ($null -ne $raw) {
        $data = [string]$raw
    }
    return [ordered]@{ kind = $kind; data = $data }
}

function Read-KeyValues([string]$Path) {
    # Get-Item on a registry path gives the RegistryKey itself; its default value ('') is not a policy value.
    $values = [ordered]@{}
    if (-not (Test-Path -LiteralPath $Path)) {
        return $null
    }
    $key = Get-Item -LiteralPath $Path
    foreach ($name in @($key.GetValueNames())) {
        if ($name -ne '') {
            $values[$name] = ConvertTo-ValueRecord $key $name
        }
    }
    return $values
}

$policyValues = Read-KeyValues $policyKey
$shadow = $null
$shadowValues = Read-KeyValues $shadowKey
if ($null -ne $shadowValues -and $shadowValues.Contains('Shadow')) {
    $shadow = $shadowValues['Shadow']
}

$values = [ordered]@{}
if ($null -ne $policyValues) {
    $values = $policyValues
}

$result = [ordered]@{
    script_version = 1
    device_time = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
    policy_key_exists = ($null -ne $policyValues)
    values = $values
    shadow = $shadow
}
ConvertTo-Json -InputObject $result -Compress -Depth 6
