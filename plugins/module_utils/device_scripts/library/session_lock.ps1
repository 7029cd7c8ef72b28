# device-script-library: session_lock
# The machine-wide mutex Global\RemoteSupport.Session that every writer of the support-session record holds from
# before it reads the record until after it wrote it (set_support_session.ps1 says why), and every reader that must
# see one whole record (a transfer checking its session, a remote-control grant checking its authorization).
# Windows releases it when a holder dies; the next owner then sees an abandoned mutex, which is not an error.

function Enter-SessionLock {
    # Created with an explicit DACL: whoever creates it first (an administrator over WinRM, or a SYSTEM task), both
    # may open and release it. With the creator's default DACL, a mutex SYSTEM made would be read-only to
    # Administrators. Only administrators and services may create Global\ objects, so no user can squat the name.
    $security = New-Object -TypeName System.Security.AccessControl.MutexSecurity
    foreach ($sid in @('S-1-5-18', 'S-1-5-32-544')) {
        $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid
        $security.AddAccessRule((New-Object -TypeName System.Security.AccessControl.MutexAccessRule -ArgumentList $identity, 'FullControl', 'Allow'))
    }
    $createdNew = $false
    $mutex = [System.Threading.Mutex]::new($false, $sessionMutex, [ref]$createdNew, $security)
    try {
        if (-not $mutex.WaitOne(30000)) {
            $mutex.Dispose()
            throw 'Timed out after 30 s waiting for the session lock (mutex Global\RemoteSupport.Session).'
        }
    }
    catch {
        $inner = $_.Exception
        while ($null -ne $inner -and -not ($inner -is [System.Threading.AbandonedMutexException])) {
            $inner = $inner.InnerException
        }
        if ($null -eq $inner) {
            throw
        }
    }
    return $mutex
}
