"""The three values that identify a device to OSCU on every call after initialisation."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

__all__ = ["DeviceCredentials"]


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """tin + bhfId + cmcKey of one initialised device (one per branch).

    ``cmc_key`` is a :class:`SecretStr` so that the generated repr (and anything that logs a
    job holding these) shows ``SecretStr('**********')``, never the key (invariant 8).
    """

    tin: str
    bhf_id: str
    cmc_key: SecretStr

    def __post_init__(self) -> None:
        if not self.tin or not self.bhf_id:
            raise ValueError("DeviceCredentials needs a tin and a bhf_id")
        if not isinstance(self.cmc_key, SecretStr):
            raise TypeError("cmc_key must be a pydantic SecretStr")
