# device-script-library: remote_control_grant
# A remote-control grant as the registry holds it, and how it is taken back, shared by start_remote_control.ps1
# (which ends a grant of another session before it gives a new one) and stop_remote_control.ps1. The grant is
# HKLM:\SOFTWARE\RemoteSupport\RemoteControl; everything start_remote_control changed on the way is recorded first
# under RemoteControlUndo, so Remove-Grant undoes exactly that and no more. Callers hold the session lock.

$terminalServicesPolicyKey = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services'
$terminalServicesNamespace = 'root\cimv2\TerminalServices'

# Grant field -> registry value under the RemoteControl key.
$grantValues = [ordered]@{
    support_session_id = 'SessionId'
    account = 'Account'
    account_sid = 'AccountSid'
    mode = 'Mode'
    user = 'UserName'
    interactive_session_id = 'ShadowSessionId'
    user_prompted = 'PromptUser'
    shadow_policy = 'ShadowPolicy'
    granted_by = 'GrantedBy'
    granted_at = 'GrantedAt'
    expires_at = 'ExpiresAt'
}
$grantIntegerFields = @('interactive_session_id', 'shadow_policy')

function Get-RegistryValue([string]$Path, [string]$Name) {
    if (-not (Test-Path -LiteralPath $Path)) {
        return $null
    }
    return (Get-Item -LiteralPath $Path).GetValue($Name)
}

function Read-Grant([bool]$Complete) {
    # $null when there is no grant. $Complete: every value must be there, for a grant to build on; otherwise a grant
    # missing a value (written by hand, or cut short) is still read, to be ended: what is there is reported.
    if (-not (Test-Path -LiteralPath $remoteControlKey)) {
        return $null
    }
    $key = Get-Item -LiteralPath $remoteControlKey
    if ($null -eq $key.GetValue('SessionId')) {
        return $null
    }
    $grant = [ordered]@{}
    foreach ($field in $grantValues.Keys) {
        $value = $key.GetValue($grantValues[$field])
        if ($Complete -and $null -eq $value) {
            throw ('The remote-control grant under {0} has no {1} value. Run remote_control with state stopped to clear it.' -f $remoteControlKey, $grantValues[$field])
        }
        if ($field -eq 'user_prompted') {
            $grant[$field] = ([int]$value -ne 0)
        }
        elseif ($grantIntegerFields -contains $field) {
            $grant[$field] = [int]$value
        }
        else {
            $grant[$field] = [string]$value
        }
    }
    return $grant
}

function Find-ListenerEntry([string]$Sid) {
    # Compared by SID in PowerShell: nothing from the request goes into a WQL query.
    foreach ($entry in @(Get-CimInstance -Namespace $terminalServicesNamespace -ClassName Win32_TSAccount -Filter "TerminalName = 'RDP-Tcp'")) {
        if ([string]$entry.SID -eq $Sid) {
            return $entry
        }
    }
    return $null
}

function Remove-Grant($Grant) {
    # Closes the open shadow connections to the granted session, undoes what RemoteControlUndo records and removes
    # the grant. Returns what it did.
    $done = [ordered]@{ shadow_connections_ended = 0; listener_entry_removed = $false; shadow_policy_restored = $false }
    if ($null -ne $Grant) {
        # RdpSa.exe runs in the shadowed session for every open shadow connection; ending it closes them.
        foreach ($process in @(Get-CimInstance -ClassName Win32_Process -Filter "Name = 'RdpSa.exe'")) {
            if ([int]$process.SessionId -eq [int]$Grant.interactive_session_id) {
                Invoke-CimMethod -InputObject $process -MethodName Terminate | Out-Null
                $done.shadow_connections_ended = $done.shadow_connections_ended + 1
            }
        }
    }
    if (Test-Path -LiteralPath $remoteControlUndoKey) {
        $undo = Get-Item -LiteralPath $remoteControlUndoKey
        if ([int]$undo.GetValue('AccountAdded', 0) -eq 1) {
            $entry = Find-ListenerEntry ([string]$undo.GetValue('AccountSid'))
            if ($null -ne $entry) {
                Invoke-CimMethod -InputObject $entry -MethodName Delete | Out-Null
                $done.listener_entry_removed = $true
            }
        }
        if ([int]$undo.GetValue('ShadowPolicyChanged', 0) -eq 1) {
            # Only the value the grant set is restored: a value someone changed since is theirs.
            $current = Get-RegistryValue $terminalServicesPolicyKey 'Shadow'
            if ($null -ne $current -and [int]$current -eq [int]$undo.GetValue('ShadowPolicySetTo', -1)) {
                $previous = $undo.GetValue('ShadowPolicyPrevious')
                if ($null -eq $previous) {
                    Remove-ItemProperty -LiteralPath $terminalServicesPolicyKey -Name 'Shadow'
                }
                else {
                    Set-ItemProperty -LiteralPath $terminalServicesPolicyKey -Name 'Shadow' -Value ([int]$previous) -Type DWord
                }
                $done.shadow_policy_restored = $true
            }
        }
        Remove-Item -LiteralPath $remoteControlUndoKey -Recurse -Force
    }
    if (Test-Path -LiteralPath $remoteControlKey) {
        Remove-Item -LiteralPath $remoteControlKey -Recurse -Force
    }
    return $done
}
