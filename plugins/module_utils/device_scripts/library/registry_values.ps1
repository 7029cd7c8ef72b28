# device-script-library: registry_values
# Registry values as JSON can carry them, kind and data: what the policy scripts report of the policy key and the
# Shadow value (get_support_policy.ps1, and set_support_policy.ps1 after it wrote).

# Remote Desktop's own policy key, where the shadow policy (value Shadow) lives.
$shadowKey = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services'

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

function Read-StoredPolicy {
    # The policy as stored: whether its key exists, its values with their kinds, and the shadow policy value.
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
    return [ordered]@{ policy_key_exists = ($null -ne $policyValues); values = $values; shadow = $shadow }
}
