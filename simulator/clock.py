"""Kenya-time stamps in the three shapes OSCU uses.

KRA stamps every answer in East Africa Time (UTC+3, no DST), and clients feed ``resultDt``
back as ``lastReqDt``; the simulator must therefore speak the same local time, not UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

#: East Africa Time, the only zone OSCU speaks.
EAT = timezone(timedelta(hours=3), "EAT")


def now() -> datetime:
    """The current instant in Kenya time."""
    return datetime.now(EAT)


def d14(moment: datetime | None = None) -> str:
    """``yyyyMMddHHmmss``: ``resultDt``, ``sdcDateTime`` and every other 14-digit stamp."""
    return (moment or now()).strftime("%Y%m%d%H%M%S")


def d8(moment: datetime | None = None) -> str:
    """``yyyyMMdd``: sale and occurrence dates."""
    return (moment or now()).strftime("%Y%m%d")


def d14_to_detail(stamp: str) -> str:
    """``yyyyMMddHHmmss`` -> ``yyyy-MM-dd HH:mm:ss.S``, the spelling of selectInvoiceDetails."""
    moment = datetime.strptime(stamp, "%Y%m%d%H%M%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S") + ".0"
