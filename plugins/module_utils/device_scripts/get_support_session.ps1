# device-script: get_support_session
# version: 1
# contract: get_support_session.contract.json
# Reads the support-session record (HKLM:\SOFTWARE\RemoteSupport\Session), the support policy
# (HKLM:\SOFTWARE\RemoteSupport\Policy, defaults where absent) and the user logged on at the console. Changes nothing.
# The registry layout is described in docs/consent-route.md.
param($InputObject)

$ErrorActionPreference = 'Stop'

$sessionKey = 'HKLM:\SOFTWARE\RemoteSupport\Session'
$policyKey = 'HKLM:\SOFTWARE\RemoteSupport\Policy'
$stampFormat = 'yyyy-MM-ddTHH:mm:ssZ'
# Timestamps are written with the invariant culture: a Thai or Arabic user culture would otherwise change the
# calendar or the digits.
$invariant = [System.Globalization.CultureInfo]::InvariantCulture

# Record field -> registry value under the Session key. Text is REG_SZ; numbers and the flag are REG_DWORD; a field
# that is null has no value at all.
$recordValues = [ordered]@{
    id = 'Id'
    state = 'State'
    requested_by = 'RequestedBy'
    reason = 'Reason'
    requested_at = 'RequestedAt'
    confirmation_required = 'ConfirmationRequired'
    confirmed_by = 'ConfirmedBy'
    authorized_at = 'AuthorizedAt'
    expires_at = 'ExpiresAt'
    ended_by = 'EndedBy'
    ended_at = 'EndedAt'
    version = 'Version'
    ttl_seconds = 'TtlSeconds'
    confirmation_timeout_seconds = 'ConfirmationTimeoutSeconds'
    changed_by = 'ChangedBy'
    changed_at = 'ChangedAt'
}
$optionalFields = @('confirmed_by', 'authorized_at', 'expires_at', 'ended_by', 'ended_at')
$integerFields = @('version', 'ttl_seconds', 'confirmation_timeout_seconds')

function Enter-SessionLock {
    # The writers (set_support_session over WinRM, apply_consent and expire_session as SYSTEM) change the record
    # value by value while holding this machine-wide mutex; holding it while reading gives one consistent record.
    # Created with an explicit DACL: whoever creates it first (an administrator over WinRM, or a SYSTEM task), both
    # may open and release it. With the creator's default DACL, a mutex SYSTEM made would be read-only to
    # Administrators. Only administrators and services may create Global\ objects, so no user can squat the name.
    $security = New-Object -TypeName System.Security.AccessControl.MutexSecurity
    foreach ($sid in @('S-1-5-18', 'S-1-5-32-544')) {
        $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid
        $security.AddAccessRule((New-Object -TypeName System.Security.AccessControl.MutexAccessRule -ArgumentList $identity, 'FullControl', 'Allow'))
    }
    $createdNew = $false
    $mutex = [System.Threading.Mutex]::new($false, 'Global\RemoteSupport.Session', [ref]$createdNew, $security)
    try {
        if (-not $mutex.WaitOne(30000)) {
            $mutex.Dispose()
            throw 'Timed out after 30 s waiting for the session lock (mutex Global\RemoteSupport.Session).'
        }
    }
    catch {
        # A writer that died holding the mutex leaves it abandoned: it is ours now, and every write rewrites the
        # whole record, so reading on is safe.
        $inner = $_.Exception
        while ($null -ne $inner -and -not ($inner -is [System.Threading.AbandonedMutexException])) {
            $inner = $inner.InnerException
        }
        if ($null -eq $inner) {
            throw
        }
    }
    return $mutex
}

function Get-NumberValue($Key, [string]$Name) {
    # A value that is absent or not a whole number counts as not set.
    $raw = $Key.GetValue($Name)
    if ($null -eq $raw) {
        return $null
    }
    $number = 0
    if ([int]::TryParse([string]$raw, [ref]$number)) {
        return $number
    }
    return $null
}

function Read-SessionRecord {
    if (-not (Test-Path -LiteralPath $sessionKey)) {
        return $null
    }
    $key = Get-Item -LiteralPath $sessionKey
    if ($null -eq $key.GetValue('Id')) {
        return $null
    }
    $record = [ordered]@{}
    foreach ($field in $recordValues.Keys) {
        $valueName = $recordValues[$field]
        $value = $key.GetValue($valueName)
        if ($null -eq $value) {
            if ($optionalFields -notcontains $field) {
                throw ("The session record under {0} has no {1} value. Remove the key to start afresh." -f $sessionKey, $valueName)
            }
            $record[$field] = $null
        }
        elseif ($field -eq 'confirmation_required') {
            $record[$field] = ([int]$value -ne 0)
        }
        elseif ($integerFields -contains $field) {
            $record[$field] = [int]$value
        }
        else {
            $record[$field] = [string]$value
        }
    }
    return $record
}

function Read-Policy {
    # No Policy key: the defaults (confirmation required, 300 s to answer, one hour of authorization).
    $policy = [ordered]@{
        confirmation_required = $true
        confirmation_timeout_seconds = 300
        session_ttl_seconds = 3600
        source = 'default'
    }
    if (-not (Test-Path -LiteralPath $policyKey)) {
        return $policy
    }
    $policy.source = 'device'
    $key = Get-Item -LiteralPath $policyKey
    $required = Get-NumberValue $key 'ConfirmationRequired'
    if ($null -ne $required) {
        $policy.confirmation_required = ($required -ne 0)
    }
    # A zero or negative time would make every request time out or expire at once: such a value keeps the default.
    $timeout = Get-NumberValue $key 'ConfirmationTimeoutSeconds'
    if ($null -ne $timeout -and $timeout -ge 1) {
        $policy.confirmation_timeout_seconds = $timeout
    }
    $ttl = Get-NumberValue $key 'SessionTtlSeconds'
    if ($null -ne $ttl -and $ttl -ge 1) {
        $policy.session_ttl_seconds = $ttl
    }
    return $policy
}

function Get-InteractiveUser {
    # Win32_ComputerSystem.UserName names the user at the console (not a Remote Desktop user): the person in front
    # of the device, who would see a consent prompt.
    $name = [string](Get-CimInstance -ClassName Win32_ComputerSystem).UserName
    if (-not $name) {
        return $null
    }
    # Their logon session is the one their shell runs in. Without a shell nobody would see a prompt either.
    foreach ($process in @(Get-CimInstance -ClassName Win32_Process -Filter "Name = 'explorer.exe'")) {
        $owner = Invoke-CimMethod -InputObject $process -MethodName GetOwner
        if ($owner.ReturnValue -eq 0 -and ('{0}\{1}' -f $owner.Domain, $owner.User) -eq $name) {
            return [ordered]@{ name = $name; session_id = [int]$process.SessionId }
        }
    }
    return $null
}

$lock = Enter-SessionLock
try {
    $record = Read-SessionRecord
    $deviceTime = [DateTime]::UtcNow.ToString($stampFormat, $invariant)
}
finally {
    $lock.ReleaseMutex()
    $lock.Dispose()
}

$result = [ordered]@{
    script_version = 1
    device_time = $deviceTime
    policy = Read-Policy
    interactive_user = Get-InteractiveUser
    session = $record
}
ConvertTo-Json -InputObject $result -Compress -Depth 5
