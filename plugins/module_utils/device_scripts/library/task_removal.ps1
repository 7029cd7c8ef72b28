# device-script-library: task_removal
# Removes one of the collection's scheduled tasks from the root folder, stopping it first when it runs; nothing
# happens when it is not there.

function Remove-Task([string]$Name) {
    $task = Get-ScheduledTask -TaskName $Name -TaskPath '\' -ErrorAction SilentlyContinue
    if ($null -ne $task) {
        if ($task.State -eq 'Running') {
            # For the consent prompt, stopping its task closes the window still on the user's screen.
            Stop-ScheduledTask -TaskName $Name -TaskPath '\'
        }
        Unregister-ScheduledTask -TaskName $Name -TaskPath '\' -Confirm:$false
    }
}
