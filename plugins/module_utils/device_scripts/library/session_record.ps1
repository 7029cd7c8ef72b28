# device-script-library: session_record
# The support-session record as the registry holds it (HKLM:\SOFTWARE\RemoteSupport\Session, one value a field)
# and the two ways to use it: Read-SessionRecord ($null when there is none) and Write-SessionRecord. Callers hold
# the session lock (library session_lock) around a read they act on and around every write.

# Record field -> registry value under the Session key (the fields of session_state.SessionRecord). Text is REG_SZ;
# numbers and the flag are REG_DWORD; a field that is null has no value at all.
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
    renewal_requested_by = 'RenewalRequestedBy'
    renewal_reason = 'RenewalReason'
    renewal_requested_at = 'RenewalRequestedAt'
}
# The renewal fields are set only while a renewal of an authorized session waits for the client.
$optionalFields = @('confirmed_by', 'authorized_at', 'expires_at', 'ended_by', 'ended_at', 'renewal_requested_by', 'renewal_reason', 'renewal_requested_at')
$integerFields = @('version', 'ttl_seconds', 'confirmation_timeout_seconds')

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

function Write-SessionRecord($Record) {
    # Every field is written on every change, so a record is never a mix of two versions once a write completes.
    if (-not (Test-Path -LiteralPath $sessionKey)) {
        New-Item -Path $sessionKey -Force | Out-Null
    }
    foreach ($field in $recordValues.Keys) {
        $valueName = $recordValues[$field]
        $value = $Record.$field
        if ($null -eq $value) {
            Remove-ItemProperty -LiteralPath $sessionKey -Name $valueName -ErrorAction SilentlyContinue
        }
        elseif ($field -eq 'confirmation_required') {
            Set-ItemProperty -LiteralPath $sessionKey -Name $valueName -Value ([int][bool]$value) -Type DWord
        }
        elseif ($integerFields -contains $field) {
            Set-ItemProperty -LiteralPath $sessionKey -Name $valueName -Value ([int]$value) -Type DWord
        }
        else {
            Set-ItemProperty -LiteralPath $sessionKey -Name $valueName -Value ([string]$value) -Type String
        }
    }
}
