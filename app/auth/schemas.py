"""Bodies of the auth and user routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from app.core.types import PlainText

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128


# Validated (email-validator) and stored lower-cased, so uniqueness ignores case.
NormalizedEmail = Annotated[EmailStr, AfterValidator(str.lower)]


class UserRegister(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: NormalizedEmail = Field(examples=["ada@example.com"])
    password: str = Field(
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
        examples=["correct horse battery staple"],
    )


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    created_at: datetime


class TokenForm(BaseModel):
    """The OAuth2 password grant (RFC 6749 §4.3), as the Swagger UI "Authorize" dialog sends it."""

    model_config = ConfigDict(extra="ignore")

    grant_type: Literal["password"] | None = None
    username: PlainText = Field(min_length=1, max_length=320, description="The account's email.")
    password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)
    scope: str = Field("", max_length=1000, description="Ignored.")
    client_id: str | None = Field(None, max_length=200, description="Ignored.")
    client_secret: str | None = Field(None, max_length=200, description="Ignored.")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=16_384)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(description="Single use: `POST /v1/auth/refresh` returns a new one.")
