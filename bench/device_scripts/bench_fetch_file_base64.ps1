# device-script: bench_fetch_file_base64
# version: 1
# contract: bench_fetch_file_base64.contract.json
# The benchmark's baseline, not part of the collection: what Ansible's winrm connection plugin does on the device
# for fetch_file (ansible/executor/powershell/winrm_fetch_file.ps1), one command per buffer: read buffer_size bytes
# at offset and answer them in base64.
param($InputObject)

$ErrorActionPreference = 'Stop'
$stream = New-Object -TypeName System.IO.FileStream -ArgumentList ([string]$InputObject.path), 'Open', 'Read', 'ReadWrite'
try {
    $null = $stream.Seek([long]$InputObject.offset, [System.IO.SeekOrigin]::Begin)
    $buffer = New-Object -TypeName byte[] -ArgumentList ([int]$InputObject.buffer_size)
    $read = $stream.Read($buffer, 0, $buffer.Length)
    $data = [Convert]::ToBase64String($buffer, 0, $read)
}
finally {
    $stream.Dispose()
}
ConvertTo-Json -InputObject ([ordered]@{ script_version = 1; data = $data }) -Compress
