"""Branch writes (§2.1 category 3): customers, users and insurers of one branch."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr

from schemas.base import Registrant
from schemas.codes import YesNo
from schemas.types import Char, DocNumber, SecretText, Tin

__all__ = ["BhfCustomerRequest", "BhfInsuranceRequest", "BhfUserRequest"]


def _password_length(secret: SecretStr) -> SecretStr:
    if not 1 <= len(secret.get_secret_value()) <= 255:
        raise ValueError("must be 1 to 255 characters")
    return secret


class BhfCustomerRequest(Registrant):
    """``saveBhfCustomer``: a customer of this branch."""

    custNo: Annotated[str, Char(9)]
    custTin: Tin
    custNm: Annotated[str, Char(60)]
    adrs: Annotated[str, Char(300)] | None = None
    telNo: Annotated[str, Char(20)] | None = None
    email: Annotated[str, Char(50)] | None = None
    faxNo: Annotated[str, Char(20)] | None = None
    useYn: YesNo
    remark: Annotated[str, Char(1000)] | None = None


class BhfUserRequest(Registrant):
    """``saveBhfUser``: a user account of this branch; the password never shows in a repr."""

    userId: Annotated[str, Char(20)]
    userNm: Annotated[str, Char(60)]
    pwd: Annotated[SecretText, AfterValidator(_password_length)]
    adrs: Annotated[str, Char(200)] | None = None
    cntc: Annotated[str, Char(20)] | None = None
    authCd: Annotated[str, Char(100)] | None = None
    remark: Annotated[str, Char(2000)] | None = None
    useYn: YesNo


class BhfInsuranceRequest(Registrant):
    """``saveBhfInsurance``: an insurer (pharmacies); ``isrcRt`` is a whole percentage."""

    isrccCd: Annotated[str, Char(10)]
    isrccNm: Annotated[str, Char(100)]
    isrcRt: Annotated[DocNumber, Field(le=100)]
    useYn: YesNo
