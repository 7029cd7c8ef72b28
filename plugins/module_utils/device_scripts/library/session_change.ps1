# device-script-library: session_change
# What apply_consent and expire_session answer before they know anything: nothing to do yet, at no session.

function New-SessionChangeResult([int]$ScriptVersion) {
    return [ordered]@{
        script_version = $ScriptVersion
        device_time = $null
        outcome = 'nothing_to_do'
        session_id = $null
        state = $null
        version = $null
    }
}
