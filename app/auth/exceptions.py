"""Authentication errors. Every credential failure is the same 401, whichever check failed."""

from __future__ import annotations

from app.core.errors import AppError, Conflict, Forbidden, Unauthorized


class InvalidCredentials(Unauthorized):
    type, title = "invalid-credentials", "Not authenticated"

    def __init__(self) -> None:
        super().__init__(
            "Send `Authorization: Bearer <access token or API key>`; this one is missing, "
            "malformed, expired or revoked."
        )


class InvalidRefreshToken(AppError):
    """A 401 without `WWW-Authenticate`: the token went in the body, so asking for an
    `Authorization` header would send the client the wrong way."""

    status, type, title = 401, "invalid-refresh-token", "Invalid refresh token"

    def __init__(self) -> None:
        super().__init__(
            "This refresh token is malformed, expired, revoked or used already; sign in again "
            "with `POST /v1/auth/token`."
        )


class LoginFailed(Unauthorized):
    type, title = "login-failed", "Incorrect email or password"


class EmailTaken(Conflict):
    type, title = "email-taken", "An account with this email already exists"


class UserTokenRequired(Forbidden):
    type, title = "user-token-required", "This route needs a user's access token"

    def __init__(self) -> None:
        super().__init__("API keys act within their project only; sign in as a user instead.")
