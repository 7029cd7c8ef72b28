# remote_support.windows streaming bootstrap, version 1.
# Sent as powershell.exe -EncodedCommand for the device scripts that move data through stdin and stdout (the file
# transfers), where bootstrap.ps1's ReadToEnd would hold a whole file in memory. stdin starts with the length of a
# header in ASCII digits and a line feed, then that many bytes of UTF-8 JSON {"script": "<text>", "input": {...}};
# whatever follows is the script's data. The script gets its input and the raw stdin and stdout streams, so binary
# data is never decoded as text, and it writes its own output (JSON lines and binary frames) to the stdout stream.
# As with bootstrap.ps1, the script text travels as data on stdin, never pasted into a command line.
Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = New-Object -TypeName System.Text.UTF8Encoding -ArgumentList $false
try {
    # Opened before anything reads [Console]::In, which would buffer (and so swallow) bytes of the data.
    $inputStream = [Console]::OpenStandardInput()
    $outputStream = [Console]::OpenStandardOutput()
    $digits = New-Object -TypeName System.Text.StringBuilder
    while ($true) {
        $byte = $inputStream.ReadByte()
        if ($byte -lt 0) {
            throw 'stdin ended before the header of the streaming bootstrap.'
        }
        if ($byte -eq 10) {
            break
        }
        if ($byte -lt 48 -or $byte -gt 57 -or $digits.Length -ge 9) {
            throw 'stdin does not start with the length of a header.'
        }
        [void]$digits.Append([char]$byte)
    }
    $length = [int]$digits.ToString()
    $header = New-Object -TypeName byte[] -ArgumentList $length
    $read = 0
    while ($read -lt $length) {
        $count = $inputStream.Read($header, $read, $length - $read)
        if ($count -le 0) {
            throw 'stdin ended inside the header of the streaming bootstrap.'
        }
        $read += $count
    }
    $payload = [System.Text.Encoding]::UTF8.GetString($header) | ConvertFrom-Json
    $script = [ScriptBlock]::Create([string]$payload.script)
    & $script $payload.input $inputStream $outputStream
    $outputStream.Flush()
    exit 0
}
catch {
    [Console]::Error.WriteLine($_.Exception.Message)
    exit 1
}
