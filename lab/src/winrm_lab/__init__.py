"""winrm-lab: a simulated fleet of Windows devices that speak real WS-Management on loopback."""

__version__ = "0.1.0"
