# device-script-library: stamps
# Timestamps as the session record and the controller write them: UTC, to the second, "YYYY-MM-DDTHH:MM:SSZ"
# (session_state.format_utc), read and written the same way whatever the device's culture and time zone.

$stampFormat = 'yyyy-MM-ddTHH:mm:ssZ'
$invariant = [System.Globalization.CultureInfo]::InvariantCulture

function Format-Stamp([DateTime]$Moment) {
    return $Moment.ToUniversalTime().ToString($stampFormat, $invariant)
}

function Set-ResultTime($Result) {
    # The device's time in whole seconds (the resolution records are kept in), stamped on a script's result as its
    # device_time; returned as the stamp text.
    $text = Format-Stamp ([DateTime]::UtcNow)
    $Result.device_time = $text
    return $text
}

function ConvertFrom-Stamp([string]$Text) {
    # $null when the text is not a timestamp.
    $styles = [System.Globalization.DateTimeStyles]'AssumeUniversal, AdjustToUniversal'
    $moment = [DateTime]::MinValue
    if ([DateTime]::TryParseExact($Text, $stampFormat, $invariant, $styles, [ref]$moment)) {
        return $moment
    }
    return $null
}
