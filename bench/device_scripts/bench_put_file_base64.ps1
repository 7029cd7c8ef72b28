# device-script: bench_put_file_base64
# version: 1
# contract: bench_put_file_base64.contract.json
# The benchmark's baseline, not part of the collection: what Ansible's winrm connection plugin does on the device
# for put_file (ansible/executor/powershell/winrm_put_file.ps1): stdin is lines of base64, each decoded, hashed
# with SHA-1 and written. Started through stream_bootstrap.ps1 so the lines are read as they arrive.
param($InputObject, $InputStream, $OutputStream)

$ErrorActionPreference = 'Stop'
$reader = New-Object -TypeName System.IO.StreamReader -ArgumentList $InputStream, ([System.Text.Encoding]::ASCII)
$fd = [System.IO.File]::Create([string]$InputObject.path)
$sha1 = [System.Security.Cryptography.SHA1]::Create()
$bytes = New-Object -TypeName byte[] -ArgumentList 0
$total = [long]0
try {
    while ($true) {
        $line = $reader.ReadLine()
        if ($null -eq $line) {
            break
        }
        $bytes = [Convert]::FromBase64String($line)
        $null = $sha1.TransformBlock($bytes, 0, $bytes.Length, $bytes, 0)
        $fd.Write($bytes, 0, $bytes.Length)
        $total += $bytes.Length
    }
}
finally {
    $fd.Dispose()
}
$null = $sha1.TransformFinalBlock($bytes, 0, 0)
$hash = [BitConverter]::ToString($sha1.Hash).Replace('-', '').ToLowerInvariant()
$line = ConvertTo-Json -InputObject ([ordered]@{ script_version = 1; sha1 = $hash; bytes = $total }) -Compress
$out = [System.Text.Encoding]::UTF8.GetBytes($line + "`n")
$OutputStream.Write($out, 0, $out.Length)
