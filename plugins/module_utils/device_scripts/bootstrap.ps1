# remote_support.windows device-script bootstrap, version 1.
# Sent as powershell.exe -EncodedCommand. Reads one JSON document from stdin: {"script": "<text>", "input": {...}},
# runs the script text with the input as its only argument, and lets the script write its one JSON result to stdout.
# The script text travels as data on stdin, never pasted into a command line, so nothing a user typed becomes code.
Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = New-Object -TypeName System.Text.UTF8Encoding -ArgumentList $false
$payload = [Console]::In.ReadToEnd() | ConvertFrom-Json
$script = [ScriptBlock]::Create([string]$payload.script)
try {
    & $script $payload.input
    exit 0
}
catch {
    [Console]::Error.WriteLine($_.Exception.Message)
    exit 1
}
