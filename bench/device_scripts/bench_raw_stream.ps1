# device-script: bench_raw_stream
# version: 1
# contract: bench_raw_stream.contract.json
# The benchmark's ceiling, not part of the collection: moves `bytes` bytes through one command and does nothing
# with them. direction in: reads and discards them from stdin; out: writes that many zero bytes to stdout. What is
# left is the cost of WinRM itself (HTTP, authentication, encryption, SOAP and base64) at the given envelope size.
param($InputObject, $InputStream, $OutputStream)

$ErrorActionPreference = 'Stop'
$buffer = New-Object -TypeName byte[] -ArgumentList 1048576
$left = [long]$InputObject.bytes
while ($left -gt 0) {
    $count = [int][Math]::Min([long]$buffer.Length, $left)
    if ([string]$InputObject.direction -eq 'in') {
        $count = $InputStream.Read($buffer, 0, $count)
        if ($count -le 0) {
            throw 'stdin ended early.'
        }
    }
    else {
        $OutputStream.Write($buffer, 0, $count)
    }
    $left -= $count
}
$line = ConvertTo-Json -InputObject ([ordered]@{ script_version = 1; bytes = [long]$InputObject.bytes }) -Compress
$out = [System.Text.Encoding]::UTF8.GetBytes($line + "`n")
$OutputStream.Write($out, 0, $out.Length)
