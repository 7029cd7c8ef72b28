# device-script-library: interactive_user
# Who is at the console, the person who would see a consent prompt.

function Get-InteractiveUser([bool]$WithSid) {
    # Win32_ComputerSystem.UserName names the user at the console (not a Remote Desktop user). Their logon session is
    # the one their shell runs in; without a shell nobody would see a prompt either. The SID comes from the shell's
    # process token, so it is known even when no domain controller answers.
    $name = [string](Get-CimInstance -ClassName Win32_ComputerSystem).UserName
    if (-not $name) {
        return $null
    }
    foreach ($process in @(Get-CimInstance -ClassName Win32_Process -Filter "Name = 'explorer.exe'")) {
        $owner = Invoke-CimMethod -InputObject $process -MethodName GetOwner
        if ($owner.ReturnValue -eq 0 -and ('{0}\{1}' -f $owner.Domain, $owner.User) -eq $name) {
            $user = [ordered]@{ name = $name; session_id = [int]$process.SessionId }
            if ($WithSid) {
                $sid = Invoke-CimMethod -InputObject $process -MethodName GetOwnerSid
                $user.sid = [string]$sid.Sid
            }
            return $user
        }
    }
    return $null
}
