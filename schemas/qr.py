"""The receipt verification link printed as a QR code (the spec's receipt verification section).

Not in the spec, but identical across ``etims``, Odoo, navari and others: the customer's phone
opens KRA's portal with ``Data`` = PIN + branch + signature.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from schemas.types import BHF_ID_PATTERN, TIN_PATTERN

__all__ = ["PRODUCTION_RECEIPT_HOST", "SANDBOX_RECEIPT_HOST", "receipt_qr_url"]

#: Portal host that resolves production receipts.
PRODUCTION_RECEIPT_HOST = "etims.kra.go.ke"
#: Portal host that resolves sandbox receipts.
SANDBOX_RECEIPT_HOST = "etims-sbx.kra.go.ke"

_PATH = "/common/link/etims/receipt/indexEtimsReceiptData"
_TIN = re.compile(TIN_PATTERN)
_BHF_ID = re.compile(BHF_ID_PATTERN)


def receipt_qr_url(tin: str, bhf_id: str, rcpt_sign: str, *, sandbox: bool = False) -> str:
    """The link a receipt's QR code encodes.

    Inputs are checked because a wrong QR code is printed on paper and cannot be recalled:
    better to fail while the receipt is still being built.
    """
    if not _TIN.fullmatch(tin):
        raise ValueError("tin must be a letter, 9 digits and a letter")
    if not _BHF_ID.fullmatch(bhf_id):
        raise ValueError("bhf_id must be two digits")
    if not rcpt_sign:
        raise ValueError("rcpt_sign is empty: the sale is not signed")
    host = SANDBOX_RECEIPT_HOST if sandbox else PRODUCTION_RECEIPT_HOST
    return f"https://{host}{_PATH}?Data={quote(tin + bhf_id + rcpt_sign, safe='')}"
