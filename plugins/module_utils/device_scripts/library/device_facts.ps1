# device-script-library: device_facts
# The six facts a support session shows (name, serial number, last agent check-in, operating system, model, device
# type) plus the device's own clock, so the controller can tell active from idle by the device's time. get_device_facts
# answers them, and get_support_session too when asked (`facts`), so that a session gate reads the device in one
# command. Takes the libraries device_layout and agent_checkin before it.

function Get-DeviceFacts {
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    $bios = Get-CimInstance -ClassName Win32_BIOS
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $enclosure = Get-CimInstance -ClassName Win32_SystemEnclosure | Select-Object -First 1

    $chassisTypes = @()
    if ($null -ne $enclosure -and $null -ne $enclosure.ChassisTypes) {
        $chassisTypes = @($enclosure.ChassisTypes | ForEach-Object { [int]$_ })
    }

    # Win32_SystemEnclosure.ChassisTypes values (SMBIOS 3.x) that mean a portable machine or a server.
    $laptopChassis = @(8, 9, 10, 11, 12, 14, 18, 21, 30, 31, 32)
    $serverChassis = @(17, 23, 25, 28, 29)
    $deviceType = 'desktop'
    if ([int]$os.ProductType -ne 1) {
        $deviceType = 'server'
    }
    elseif (@($chassisTypes | Where-Object { $serverChassis -contains $_ }).Count -gt 0) {
        $deviceType = 'server'
    }
    elseif (@($chassisTypes | Where-Object { $laptopChassis -contains $_ }).Count -gt 0) {
        $deviceType = 'laptop'
    }

    $lastCheckIn = Read-LastCheckIn

    return [ordered]@{
        script_version = 1
        computer_name = [string]$computer.Name
        serial_number = [string]$bios.SerialNumber
        manufacturer = [string]$computer.Manufacturer
        model = [string]$computer.Model
        chassis_types = $chassisTypes
        device_type = $deviceType
        os_caption = [string]$os.Caption
        os_version = [string]$os.Version
        os_product_type = [int]$os.ProductType
        last_checkin = $lastCheckIn
        device_time = [DateTime]::UtcNow.ToString('yyyy-MM-ddTHH:mm:ssZ', [Globalization.CultureInfo]::InvariantCulture)
    }
}
