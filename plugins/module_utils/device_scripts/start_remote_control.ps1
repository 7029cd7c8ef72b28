# device-script: start_remote_control
# version: 2
# contract: start_remote_control.contract.json
# Grants one specialist's Windows account the right to shadow (Remote Desktop remote control of) the interactive
# user's session, for the current support-session authorization only, and arranges that the device takes the right
# back at the authorization's expires_at even if no controller ever returns: a one-shot SYSTEM task runs
# stop_remote_control.ps1 then. See docs/remote-control.md.
#
# Windows' own pieces: the RDP-Tcp listener's permissions (Win32_TSAccount: WINSTATION_SHADOW is "Remote Control"),
# and the policy "Set rules for remote control of Remote Desktop Services user sessions" (value Shadow: 1 full
# control with the user's permission, 2 without, 3 view with the user's permission, 4 without). The specialist then
# connects with mstsc /shadow:<session id>.
#
# Every change is first written to HKLM:\SOFTWARE\RemoteSupport\RemoteControlUndo, so whatever ends the grant (the
# controller, the end task, a run cut short) undoes exactly what was done and no more.
param($InputObject)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# library: device_layout
# library: script_folder
# library: audit_event

$terminalServerKey = 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server'
$listenerKey = 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server\WinStations\RDP-Tcp'
$shadowFirewallRule = 'RemoteDesktop-Shadow-In-TCP'
$listenerName = 'RDP-Tcp'
# Win32_TSAccount.PermissionsAllowed bit, and the ModifyPermissions index, of WINSTATION_SHADOW (Remote Control).
$shadowRightBit = 0x10
$shadowPermissionIndex = 4
# Win32_TSPermissionsSetting.AddAccount preset WINSTATION_GUEST_ACCESS: logon only, the smallest preset there is.
$guestAccessPreset = 0

$taskScriptName = 'stop_remote_control'
$powershellExe = Join-Path -Path $env:SystemRoot -ChildPath 'System32\WindowsPowerShell\v1.0\powershell.exe'

# library: stamps

# library: session_lock

# library: remote_control_grant

# --- registry helpers -----------------------------------------------------------------------------------------------
function Set-RegistryValue([string]$Path, [string]$Name, $Value, [string]$Type) {
    if (-not (Test-Path -LiteralPath $Path)) {
        New-Item -Path $Path -Force | Out-Null
    }
    Set-ItemProperty -LiteralPath $Path -Name $Name -Value $Value -Type $Type
}

function Write-Grant($Grant) {
    if (-not (Test-Path -LiteralPath $remoteControlKey)) {
        New-Item -Path $remoteControlKey -Force | Out-Null
    }
    foreach ($field in $grantValues.Keys) {
        $name = $grantValues[$field]
        if ($field -eq 'user_prompted') {
            Set-ItemProperty -LiteralPath $remoteControlKey -Name $name -Value ([int][bool]$Grant[$field]) -Type DWord
        }
        elseif ($grantIntegerFields -contains $field) {
            Set-ItemProperty -LiteralPath $remoteControlKey -Name $name -Value ([int]$Grant[$field]) -Type DWord
        }
        else {
            Set-ItemProperty -LiteralPath $remoteControlKey -Name $name -Value ([string]$Grant[$field]) -Type String
        }
    }
}

function Test-SameGrant($Left, $Right) {
    if ($null -eq $Left -or $null -eq $Right) {
        return $false
    }
    foreach ($field in $grantValues.Keys) {
        if ($field -eq 'granted_at' -or $field -eq 'granted_by') {
            continue
        }
        if ([string]$Left[$field] -ne [string]$Right[$field]) {
            return $false
        }
    }
    return $true
}

# --- Remote Desktop on this device ----------------------------------------------------------------------------------
function Get-RemoteDesktopState {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    # The policy ("Allow users to connect remotely by using Remote Desktop Services") wins over the local setting;
    # with neither, Windows denies connections.
    $deny = Get-RegistryValue $terminalServicesPolicyKey 'fDenyTSConnections'
    $source = 'policy'
    if ($null -eq $deny) {
        $deny = Get-RegistryValue $terminalServerKey 'fDenyTSConnections'
        $source = 'local'
    }
    if ($null -eq $deny) {
        $deny = 1
        $source = 'default'
    }
    $port = Get-RegistryValue $listenerKey 'PortNumber'
    if ($null -eq $port) {
        $port = 3389
    }
    $rule = Get-NetFirewallRule -Name $shadowFirewallRule -ErrorAction SilentlyContinue
    $ruleEnabled = $false
    if ($null -ne $rule) {
        $ruleEnabled = ([string]$rule.Enabled -eq 'True')
    }
    return [ordered]@{
        enabled = ([int]$deny -eq 0)
        enabled_source = $source
        port = [int]$port
        edition = [string]$os.Caption
        server = ([int]$os.ProductType -ne 1)
        shadow_firewall_rule_enabled = $ruleEnabled
        sessions = @(Get-ActiveSession)
    }
}

function Get-ActiveSession {
    # Remote Desktop Services' own list: only an active session (WTSActive) can be shadowed, and on a server the
    # person to help may be in a Remote Desktop session rather than at the console.
    if (-not ('RemoteSupport.WtsSessions' -as [type])) {
        Add-Type -TypeDefinition @'
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace RemoteSupport
{
    public static class WtsSessions
    {
        [StructLayout(LayoutKind.Sequential, CharSet = CharSet.Unicode)]
        private struct WTS_SESSION_INFO
        {
            public int SessionId;
            public string WinStationName;
            public int State;
        }

        private const int WTSActive = 0;
        private const int WTSUserName = 5;
        private const int WTSDomainName = 7;

        [DllImport("wtsapi32.dll", CharSet = CharSet.Unicode, EntryPoint = "WTSEnumerateSessionsW", SetLastError = true)]
        private static extern bool WTSEnumerateSessions(IntPtr server, int reserved, int version, out IntPtr sessions, out int count);

        [DllImport("wtsapi32.dll", CharSet = CharSet.Unicode, EntryPoint = "WTSQuerySessionInformationW", SetLastError = true)]
        private static extern bool WTSQuerySessionInformation(IntPtr server, int sessionId, int infoClass, out IntPtr buffer, out int bytes);

        [DllImport("wtsapi32.dll")]
        private static extern void WTSFreeMemory(IntPtr memory);

        [DllImport("kernel32.dll")]
        private static extern uint WTSGetActiveConsoleSessionId();

        // One line per active session with a user: id, WinStation, DOMAIN\user, 1 when it is the console's.
        public static string[] Active()
        {
            IntPtr list;
            int count;
            if (!WTSEnumerateSessions(IntPtr.Zero, 0, 1, out list, out count))
            {
                throw new System.ComponentModel.Win32Exception();
            }
            uint console = WTSGetActiveConsoleSessionId();
            List<string> found = new List<string>();
            try
            {
                int size = Marshal.SizeOf(typeof(WTS_SESSION_INFO));
                for (int i = 0; i < count; i++)
                {
                    WTS_SESSION_INFO info = (WTS_SESSION_INFO)Marshal.PtrToStructure(new IntPtr(list.ToInt64() + i * size), typeof(WTS_SESSION_INFO));
                    if (info.State != WTSActive)
                    {
                        continue;
                    }
                    string user = Query(info.SessionId, WTSUserName);
                    if (String.IsNullOrEmpty(user))
                    {
                        continue;
                    }
                    string flag = ((uint)info.SessionId == console) ? "1" : "0";
                    found.Add(info.SessionId + "\t" + info.WinStationName + "\t" + Query(info.SessionId, WTSDomainName) + "\\" + user + "\t" + flag);
                }
            }
            finally
            {
                WTSFreeMemory(list);
            }
            return found.ToArray();
        }

        private static string Query(int sessionId, int infoClass)
        {
            IntPtr buffer;
            int bytes;
            if (!WTSQuerySessionInformation(IntPtr.Zero, sessionId, infoClass, out buffer, out bytes))
            {
                return String.Empty;
            }
            try
            {
                return Marshal.PtrToStringUni(buffer);
            }
            finally
            {
                WTSFreeMemory(buffer);
            }
        }
    }
}
'@
    }
    foreach ($line in [RemoteSupport.WtsSessions]::Active()) {
        $parts = $line.Split("`t")
        [ordered]@{
            user = $parts[2]
            session_id = [int]$parts[0]
            station = $parts[1]
            console = ($parts[3] -eq '1')
        }
    }
}

function Get-RemoteControlMode {
    # A value that is not text, or not one of the modes, counts as absent (the rule support_policy documents).
    if (-not (Test-Path -LiteralPath $policyKey)) {
        return 'control'
    }
    $key = Get-Item -LiteralPath $policyKey
    if (@($key.GetValueNames()) -notcontains 'RemoteControlMode') {
        return 'control'
    }
    $kind = [string]$key.GetValueKind('RemoteControlMode')
    $mode = ([string]$key.GetValue('RemoteControlMode')).Trim().ToLowerInvariant()
    if (@('String', 'ExpandString') -contains $kind -and @('control', 'view', 'none') -contains $mode) {
        return $mode
    }
    return 'control'
}

function Get-ShadowPolicyValue([string]$Mode, [bool]$PromptUser) {
    # "Set rules for remote control of Remote Desktop Services user sessions".
    if ($Mode -eq 'control') {
        if ($PromptUser) {
            return 1
        }
        return 2
    }
    if ($PromptUser) {
        return 3
    }
    return 4
}

# SID_NAME_USE, as LookupAccountName reports what kind of principal a name is.
$sidNameUse = @{ 1 = 'user'; 2 = 'group'; 3 = 'domain'; 4 = 'alias'; 5 = 'well_known_group'; 6 = 'deleted'; 7 = 'invalid'; 8 = 'unknown'; 9 = 'computer'; 10 = 'label' }

function Resolve-Account([string]$Account) {
    # LookupAccountName, not NTAccount.Translate alone: Translate resolves a group as readily as a person, and only
    # LookupAccountName says which it is. It takes DOMAIN\name and name@dns.domain alike. $null: no such account.
    if (-not ('RemoteSupport.AccountLookup' -as [type])) {
        Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace RemoteSupport
{
    public static class AccountLookup
    {
        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, EntryPoint = "LookupAccountNameW", SetLastError = true)]
        private static extern bool LookupAccountName(string systemName, string accountName, byte[] sid, ref uint sidSize, StringBuilder domainName, ref uint domainSize, out int use);

        // "SID<TAB>SID_NAME_USE", or null when the name maps to no account.
        public static string Lookup(string name)
        {
            uint sidSize = 0;
            uint domainSize = 0;
            int use;
            LookupAccountName(null, name, null, ref sidSize, null, ref domainSize, out use);
            if (sidSize == 0)
            {
                return null;
            }
            byte[] sid = new byte[sidSize];
            StringBuilder domain = new StringBuilder((int)domainSize);
            if (!LookupAccountName(null, name, sid, ref sidSize, domain, ref domainSize, out use))
            {
                return null;
            }
            return new System.Security.Principal.SecurityIdentifier(sid, 0).Value + "\t" + use;
        }
    }
}
'@
    }
    $found = [RemoteSupport.AccountLookup]::Lookup($Account)
    if (-not $found) {
        return $null
    }
    $parts = $found.Split("`t")
    $kind = $sidNameUse[[int]$parts[1]]
    if (-not $kind) {
        $kind = 'unknown'
    }
    # The name as Windows gives it back (DOMAIN\name), so the grant and the connection file name the account one way.
    $name = $Account
    try {
        $sid = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $parts[0]
        $name = $sid.Translate([System.Security.Principal.NTAccount]).Value
    }
    catch {
        $name = $Account
    }
    return [ordered]@{ name = $name; sid = $parts[0]; kind = $kind }
}

function Get-AccountRefusal($Found) {
    # Remote control is for one person: a user (SidTypeUser) of a domain or of this computer (S-1-5-21-...) with a
    # relative id of 1000 or more (below are the built-in Administrator, Guest, krbtgt and the like), not a computer.
    if ($Found.kind -ne 'user') {
        return 'account_not_a_user'
    }
    if ($Found.sid -notmatch '^S-1-5-21-\d+-\d+-\d+-(\d+)$' -or [long]$Matches[1] -lt 1000 -or $Found.name.EndsWith('$')) {
        return 'account_built_in'
    }
    return $null
}

# --- the end task and its script ------------------------------------------------------------------------------------
function Install-TaskScript([string]$Text) {
    if ($Text -notmatch ('(?m)^# device-script: ' + $taskScriptName + '\s*$')) {
        throw ('task_scripts.{0} is not the {0} device script (its header does not name it).' -f $taskScriptName)
    }
    $path = Join-Path -Path $scriptFolder -ChildPath ($taskScriptName + '.ps1')
    if ((Test-Path -LiteralPath $path) -and ([System.IO.File]::ReadAllText($path) -eq $Text)) {
        return
    }
    Lock-ScriptFolder
    if (Test-Path -LiteralPath $path) {
        Remove-Item -LiteralPath $path -Force
    }
    # UTF-8 with a byte-order mark: Windows PowerShell 5.1 reads a script without one in the ANSI code page.
    [System.IO.File]::WriteAllText($path, $Text, (New-Object -TypeName System.Text.UTF8Encoding -ArgumentList $true))
}

function Test-EndTask([string]$ExpiresAt) {
    $task = Get-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\' -ErrorAction SilentlyContinue
    if ($null -eq $task) {
        return $false
    }
    foreach ($trigger in @($task.Triggers)) {
        # Task Scheduler may give the boundary back with an offset, or in local time: compare the moment.
        $start = [DateTime]::MinValue
        $styles = [System.Globalization.DateTimeStyles]::AdjustToUniversal
        if ([DateTime]::TryParse([string]$trigger.StartBoundary, $invariant, $styles, [ref]$start)) {
            if ((Format-Stamp $start) -eq $ExpiresAt) {
                return $true
            }
        }
    }
    return $false
}

function Register-EndTask([string]$ExpiresAt) {
    $path = Join-Path -Path $scriptFolder -ChildPath ($taskScriptName + '.ps1')
    # A fixed script path and no arguments: the script reads the grant from the registry.
    $arguments = '-NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -File "{0}"' -f $path
    $action = New-ScheduledTaskAction -Execute $powershellExe -Argument $arguments
    $at = ConvertFrom-Stamp $ExpiresAt
    # A UTC start boundary: a time-zone change on the device does not move the end of the grant.
    $trigger = New-ScheduledTaskTrigger -Once -At ($at.ToLocalTime())
    $trigger.StartBoundary = $ExpiresAt
    $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    # StartWhenAvailable: a device that was off or asleep at expires_at takes the right back as soon as it can.
    $settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew -ExecutionTimeLimit (New-TimeSpan -Minutes 5)
    Register-ScheduledTask -TaskName $endRemoteControlTask -TaskPath '\' -Action $action -Trigger $trigger -Principal $principal -Settings $settings -Force | Out-Null
}

# --- the request ----------------------------------------------------------------------------------------------------
$request = $InputObject
if ($null -eq $request -or -not [string]$request.support_session_id -or -not [string]$request.account) {
    throw 'The input needs support_session_id and account.'
}
if (@('control', 'view') -notcontains [string]$request.mode) {
    throw ("mode '{0}' is not control or view." -f $request.mode)
}
$checkOnly = [bool]$request.check_only
$account = [string]$request.account
$promptUser = [bool]$request.prompt_user
$requiredShadow = Get-ShadowPolicyValue ([string]$request.mode) $promptUser

$result = [ordered]@{
    script_version = 2
    device_time = $null
    applied = $false
    changed = $false
    refused_reason = $null
    session_state = $null
    remote_control_mode = $null
    remote_desktop = $null
    interactive_user = $null
    shadow_policy = [ordered]@{ current = $null; required = $requiredShadow }
    grant = $null
    replaced_grant = $null
    account = $null
}

$lock = Enter-SessionLock
try {
    $nowText = Set-ResultTime $result
    $now = ConvertFrom-Stamp $nowText
    $desktop = Get-RemoteDesktopState
    $result.remote_desktop = $desktop
    $currentShadow = Get-RegistryValue $terminalServicesPolicyKey 'Shadow'
    if ($null -ne $currentShadow) {
        $currentShadow = [int]$currentShadow
    }
    $result.shadow_policy.current = $currentShadow
    $policyMode = Get-RemoteControlMode
    $result.remote_control_mode = $policyMode
    $allowedModes = @('control', 'view')
    if ($policyMode -eq 'view') {
        $allowedModes = @('view')
    }
    elseif ($policyMode -eq 'none') {
        $allowedModes = @()
    }

    # The session must still be the authorized one the controller read: a deauthorize or an expiry since then wins.
    $storedId = [string](Get-RegistryValue $sessionKey 'Id')
    $storedState = [string](Get-RegistryValue $sessionKey 'State')
    $expiresAt = ConvertFrom-Stamp ([string](Get-RegistryValue $sessionKey 'ExpiresAt'))
    $refused = $null
    if ($storedId -ne [string]$request.support_session_id -or $storedState -ne 'authorized' -or $null -eq $expiresAt -or $expiresAt -le $now) {
        $refused = 'session_changed'
        if ($storedState) {
            $result.session_state = $storedState
            if ($storedState -eq 'authorized' -and $null -ne $expiresAt -and $expiresAt -le $now) {
                $result.session_state = 'expired'
            }
        }
    }
    elseif ($allowedModes -notcontains [string]$request.mode) {
        $refused = 'mode_not_allowed'
    }
    elseif ($desktop.edition -match '\bHome\b') {
        $refused = 'edition_unsupported'
    }
    elseif (-not $desktop.enabled) {
        $refused = 'rdp_disabled'
    }
    elseif (-not $desktop.shadow_firewall_rule_enabled) {
        $refused = 'shadow_firewall_rule_disabled'
    }

    # Whose session: the user named, else the only one there is.
    $target = $null
    if ($null -eq $refused) {
        $sessions = @($desktop.sessions)
        if ($null -ne $request.user) {
            foreach ($session in $sessions) {
                if ($session.user -eq [string]$request.user) {
                    $target = $session
                    break
                }
            }
            if ($null -eq $target) {
                $refused = 'user_not_logged_on'
            }
        }
        elseif ($sessions.Count -eq 0) {
            $refused = 'no_interactive_user'
        }
        elseif ($sessions.Count -gt 1) {
            $refused = 'several_users'
        }
        else {
            $target = $sessions[0]
        }
    }
    $result.interactive_user = $target

    $sid = $null
    $entry = $null
    if ($null -eq $refused) {
        $found = Resolve-Account $account
        if ($null -eq $found) {
            $refused = 'account_unknown'
        }
        else {
            $result.account = $found
            $refused = Get-AccountRefusal $found
            $sid = $found.sid
            # The grant names the account as Windows does.
            $account = $found.name
        }
    }
    if ($null -eq $refused) {
        $entry = Find-ListenerEntry $sid
        # Only an entry this script can take back exactly is changed: one it added itself, or none.
        if ($null -ne $entry) {
            $allowed = [int]$entry.PermissionsAllowed
            $denied = [int]$entry.PermissionsDenied
            if (($denied -band $shadowRightBit) -ne 0 -or ($allowed -band $shadowRightBit) -eq 0) {
                $refused = 'listener_entry_conflict'
            }
        }
    }

    $current = Read-Grant $true
    $stale = $null
    if ($null -ne $current) {
        $currentExpires = ConvertFrom-Stamp $current.expires_at
        if ($current.support_session_id -ne [string]$request.support_session_id -or $null -eq $currentExpires -or $currentExpires -le $now) {
            $stale = $current
            $current = $null
        }
        elseif ($null -eq $refused -and $current.account_sid -ne $sid) {
            $refused = 'granted_to_another_account'
            $result.grant = $current
        }
    }

    if ($null -ne $refused) {
        $result.refused_reason = $refused
    }
    else {
        $undoAccountAdded = [int](Get-RegistryValue $remoteControlUndoKey 'AccountAdded')
        $grantedAt = $nowText
        $grantedBy = [string]$request.requested_by
        if ($null -ne $current) {
            $grantedAt = $current.granted_at
            $grantedBy = $current.granted_by
        }
        $wanted = [ordered]@{
            support_session_id = [string]$request.support_session_id
            account = $account
            account_sid = $sid
            mode = [string]$request.mode
            user = $target.user
            interactive_session_id = [int]$target.session_id
            user_prompted = $promptUser
            shadow_policy = $requiredShadow
            granted_by = $grantedBy
            granted_at = $grantedAt
            expires_at = Format-Stamp $expiresAt
        }
        $needsEntry = ($null -eq $entry)
        $needsPolicy = ($currentShadow -ne $requiredShadow)
        $needsGrant = -not (Test-SameGrant $current $wanted)
        $needsTask = -not (Test-EndTask $wanted.expires_at)
        if ($needsGrant) {
            # A changed grant is given afresh: its time and who asked are the new ones.
            $wanted.granted_at = $nowText
            $wanted.granted_by = [string]$request.requested_by
        }
        $result.changed = ($null -ne $stale) -or $needsEntry -or $needsPolicy -or $needsGrant -or $needsTask
        $result.replaced_grant = $stale
        $result.grant = $wanted
        if ($checkOnly) {
            $result.shadow_policy.current = $currentShadow
        }
        else {
            if ($null -ne $stale) {
                # A grant of another session (or one past its end) goes first, undone as stop_remote_control does.
                Remove-Grant $stale | Out-Null
                $undoAccountAdded = 0
                $entry = Find-ListenerEntry $sid
                $needsEntry = ($null -eq $entry)
                $currentShadow = Get-RegistryValue $terminalServicesPolicyKey 'Shadow'
                if ($null -ne $currentShadow) {
                    $currentShadow = [int]$currentShadow
                }
                $needsPolicy = ($currentShadow -ne $requiredShadow)
            }
            Install-TaskScript ([string]$request.task_scripts.stop_remote_control)
            if ($needsEntry) {
                # Recorded first: an end that comes while this is half done still takes the entry back.
                Set-RegistryValue $remoteControlUndoKey 'Account' $account 'String'
                Set-RegistryValue $remoteControlUndoKey 'AccountSid' $sid 'String'
                Set-RegistryValue $remoteControlUndoKey 'AccountAdded' 1 'DWord'
                $setting = Get-CimInstance -Namespace $terminalServicesNamespace -ClassName Win32_TSPermissionsSetting -Filter "TerminalName = 'RDP-Tcp'"
                $added = Invoke-CimMethod -InputObject $setting -MethodName AddAccount -Arguments @{ AccountName = $account; PermissionPreSet = [uint32]$guestAccessPreset }
                if ($added.ReturnValue -ne 0) {
                    throw ('Adding {0} to the {1} listener failed (Win32_TSPermissionsSetting.AddAccount returned {2}).' -f $account, $listenerName, $added.ReturnValue)
                }
                $entry = Find-ListenerEntry $sid
                if ($null -eq $entry) {
                    throw ('{0} was added to the {1} listener but is not listed there.' -f $account, $listenerName)
                }
                $modified = Invoke-CimMethod -InputObject $entry -MethodName ModifyPermissions -Arguments @{ PermissionMask = [uint32]$shadowPermissionIndex; Allow = $true }
                if ($modified.ReturnValue -ne 0) {
                    throw ('Giving {0} the Remote Control permission failed (Win32_TSAccount.ModifyPermissions returned {1}).' -f $account, $modified.ReturnValue)
                }
            }
            elseif ($undoAccountAdded -ne 1) {
                # The account had its own entry with Remote Control before: nothing of it is ours to take back.
                Set-RegistryValue $remoteControlUndoKey 'AccountAdded' 0 'DWord'
            }
            if ($needsPolicy) {
                if ([int](Get-RegistryValue $remoteControlUndoKey 'ShadowPolicyChanged') -ne 1) {
                    # The value before the first change is what the end restores; a later mode change keeps it.
                    if ($null -eq $currentShadow) {
                        Remove-ItemProperty -LiteralPath $remoteControlUndoKey -Name 'ShadowPolicyPrevious' -ErrorAction SilentlyContinue
                    }
                    else {
                        Set-RegistryValue $remoteControlUndoKey 'ShadowPolicyPrevious' $currentShadow 'DWord'
                    }
                    Set-RegistryValue $remoteControlUndoKey 'ShadowPolicyChanged' 1 'DWord'
                }
                Set-RegistryValue $remoteControlUndoKey 'ShadowPolicySetTo' $requiredShadow 'DWord'
                Set-RegistryValue $terminalServicesPolicyKey 'Shadow' $requiredShadow 'DWord'
            }
            if ($needsGrant) {
                Write-Grant $wanted
            }
            if ($needsTask) {
                Register-EndTask $wanted.expires_at
            }
            if ($result.changed) {
                $prompt = 'the user is not asked'
                if ($promptUser) {
                    $prompt = 'the user is asked to allow each connection'
                }
                $message = 'Support session {0}: remote control ({1}) of the session of {2} (session {3}) granted to {4} by {5} at {6} until {7}; {8}.' -f $wanted.support_session_id, $wanted.mode, $wanted.user, $wanted.interactive_session_id, $account, ([string]$request.requested_by), $nowText, $wanted.expires_at, $prompt
                Write-Audit $remoteControlGrantedEventId 'Information' $message
            }
            $result.applied = $true
            $result.shadow_policy.current = $requiredShadow
        }
    }
}
finally {
    $lock.ReleaseMutex()
    $lock.Dispose()
}

ConvertTo-Json -InputObject $result -Compress -Depth 6
