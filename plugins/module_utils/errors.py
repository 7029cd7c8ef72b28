# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's failure vocabulary: every failure talking to a device ends in one DeviceError with a reason."""

from __future__ import annotations

import typing as t

# Every failure ends in exactly one of these reasons; playbooks branch on them.
REASONS = ("dns", "refused", "timeout", "tls", "auth", "protocol", "quota", "script")

# The product's own words (PRODUCT.md): a device that cannot be supported now, and a connection cut mid-exchange.
# Every message that uses them goes on with the reason and the place to fix it.
UNABLE_TO_CONNECT = "Unable to connect to the device"
CONNECTION_LOST = "Connection to workstation lost"


class SettingsError(ValueError):
    """Connection settings that cannot work (missing user, out-of-range numbers, ...)."""


class DeviceError(Exception):
    """A failure talking to a device, named by one of REASONS, with a message that says what to check."""

    def __init__(self, reason: str, message: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail

    def as_connection(self) -> dict[str, t.Any]:
        """The `connection` block modules return for this failure."""
        return {"valid": False, "reason": self.reason, "message": self.message}
