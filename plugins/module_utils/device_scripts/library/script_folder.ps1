# device-script-library: script_folder
# The folder of the scripts SYSTEM runs ($scriptFolder, library device_layout) and its parent. Only SYSTEM and
# Administrators may change them: nothing is inherited from C:\ProgramData, where any user may create files (a folder
# a user made first would otherwise stay theirs). Owner and grants are the layout's script_folder_acl.

function New-ScriptFolderAcl {
    $acl = New-Object -TypeName System.Security.AccessControl.DirectorySecurity
    $acl.SetAccessRuleProtection($true, $false)
    $acl.SetOwner((New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $scriptFolderOwner))
    $inherit = [System.Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
    $propagate = [System.Security.AccessControl.PropagationFlags]::None
    foreach ($grant in $scriptFolderGrants) {
        $sid = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $grant[0]
        $rule = New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList $sid, $grant[1], $inherit, $propagate, 'Allow'
        $acl.AddAccessRule($rule)
    }
    return $acl
}

function Lock-ScriptFolder {
    # Fails (and with it the script, before it writes a script file) when the folder cannot be made safe.
    $root = Split-Path -Path $scriptFolder -Parent
    foreach ($folder in @($root, $scriptFolder)) {
        if (-not (Test-Path -LiteralPath $folder)) {
            New-Item -ItemType Directory -Path $folder | Out-Null
        }
        Set-Acl -LiteralPath $folder -AclObject (New-ScriptFolderAcl)
    }
}
