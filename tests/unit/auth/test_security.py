from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from app.core.config import SecuritySettings
from app.core.security import (
    MAX_TOKEN_BYTES,
    InvalidTokenError,
    TokenType,
    api_key_matches,
    api_key_prefix,
    decode_token,
    hash_api_key,
    hash_password,
    issue_access_token,
    issue_refresh_token,
    new_api_key,
    password_needs_rehash,
    verify_password,
)
from tests.unit.auth.tokens import (
    claims,
    ed25519_pem,
    hmac_signed,
    hs256_settings,
    p256_pem,
    sign,
    unsigned,
    with_payload,
)

SETTINGS = hs256_settings()
SECRET = SETTINGS.jwt_secret.get_secret_value()


def _refused(token: str, settings: SecuritySettings = SETTINGS) -> bool:
    try:
        decode_token(settings, token, token_type=TokenType.access)
    except InvalidTokenError:
        return True
    return False


class TestIssuedTokens:
    def test_an_access_token_decodes_to_its_user(self) -> None:
        user_id = uuid.uuid4()

        issued = issue_access_token(SETTINGS, subject=user_id)

        decoded = decode_token(SETTINGS, issued.token, token_type=TokenType.access)
        assert decoded.subject == str(user_id)
        assert decoded.token_type is TokenType.access
        assert decoded.key_id == "k1"

    def test_access_tokens_live_at_most_fifteen_minutes(self) -> None:
        issued = issue_access_token(SETTINGS, subject=uuid.uuid4())

        decoded = decode_token(SETTINGS, issued.token, token_type=TokenType.access)
        assert issued.expires_in == SETTINGS.access_token_ttl_s <= 900
        assert decoded.expires_at - decoded.issued_at == timedelta(seconds=issued.expires_in)

    def test_a_refresh_token_carries_its_row_id_and_lives_longer(self) -> None:
        row_id = uuid.uuid4()

        issued = issue_refresh_token(SETTINGS, subject=uuid.uuid4(), token_id=row_id)

        decoded = decode_token(SETTINGS, issued.token, token_type=TokenType.refresh)
        assert decoded.token_id == str(row_id)
        assert issued.expires_in == SETTINGS.refresh_token_ttl_s > SETTINGS.access_token_ttl_s

    def test_a_hand_signed_token_with_every_claim_is_accepted(self) -> None:
        # The baseline the forgeries below differ from in one respect each.
        assert not _refused(sign(claims(SETTINGS), SECRET))

    def test_a_hand_made_hs256_token_with_the_real_secret_is_accepted(self) -> None:
        # So the forgeries made the same way fail for their key, not for how they are made.
        assert not _refused(hmac_signed(claims(SETTINGS), SECRET.encode()))


class TestForgedTokens:
    @pytest.mark.parametrize(
        "token",
        [
            pytest.param(unsigned(claims(SETTINGS)), id="alg-none"),
            pytest.param(unsigned(claims(SETTINGS), kid=None), id="alg-none-no-kid"),
            pytest.param(sign(claims(SETTINGS), secrets.token_bytes(32)), id="wrong-key"),
            pytest.param(
                sign(claims(SETTINGS), SECRET * 2, algorithm="HS512"), id="other-algorithm"
            ),
            pytest.param(sign(claims(SETTINGS), SECRET, kid="k9"), id="unknown-kid"),
            pytest.param(sign(claims(SETTINGS), SECRET, kid=None), id="no-kid"),
            pytest.param(
                hmac_signed(claims(SETTINGS), SECRET.encode(), kid=["k1"]), id="kid-not-a-string"
            ),
            pytest.param(
                sign(claims(SETTINGS), SECRET, jku="https://evil.example/jwks"), id="jku-header"
            ),
            pytest.param(sign(claims(SETTINGS), SECRET, x5u="https://evil.example/c"), id="x5u"),
            pytest.param(
                sign(claims(SETTINGS, iat=1_000, exp=1_060), SECRET), id="expired-long-ago"
            ),
            pytest.param(
                sign(
                    claims(
                        SETTINGS,
                        iat=int(datetime.now(UTC).timestamp()) - 120,
                        exp=int(datetime.now(UTC).timestamp()) - 30,
                    ),
                    SECRET,
                ),
                id="expired",
            ),
            pytest.param(
                sign(claims(SETTINGS, iat=int(datetime.now(UTC).timestamp()) + 600), SECRET),
                id="issued-in-the-future",
            ),
            pytest.param(sign(claims(SETTINGS, aud="another-api"), SECRET), id="wrong-aud"),
            pytest.param(sign(claims(SETTINGS, iss="someone-else"), SECRET), id="wrong-iss"),
            pytest.param(sign(claims(SETTINGS, typ="refresh"), SECRET), id="refresh-as-access"),
            pytest.param(sign(claims(SETTINGS, typ="id"), SECRET), id="unknown-type"),
            pytest.param(sign(claims(SETTINGS, sub=42), SECRET), id="sub-not-a-string"),
            pytest.param("", id="empty"),
            pytest.param("not-a-token", id="garbage"),
            pytest.param("a.b.c", id="three-garbage-parts"),
            pytest.param("é.é.é", id="non-ascii"),
        ],
    )
    def test_is_refused(self, token: str) -> None:
        assert _refused(token)

    @pytest.mark.parametrize("claim", ["exp", "iat", "sub", "iss", "aud", "jti", "typ"])
    def test_a_token_without_a_required_claim_is_refused(self, claim: str) -> None:
        assert _refused(sign(claims(SETTINGS, **{claim: None}), SECRET))

    def test_a_tampered_payload_is_refused(self) -> None:
        token = issue_access_token(SETTINGS, subject=uuid.uuid4()).token

        forged = with_payload(token, claims(SETTINGS, sub=str(uuid.uuid4())))

        assert _refused(forged)

    def test_an_oversized_token_is_refused_before_decoding(self) -> None:
        token = sign(claims(SETTINGS, padding="x" * MAX_TOKEN_BYTES), SECRET)

        assert len(token) > MAX_TOKEN_BYTES
        with pytest.raises(InvalidTokenError, match="8 KB"):
            decode_token(SETTINGS, token, token_type=TokenType.access)

    def test_an_access_token_is_not_a_refresh_token(self) -> None:
        token = issue_access_token(SETTINGS, subject=uuid.uuid4()).token

        with pytest.raises(InvalidTokenError):
            decode_token(SETTINGS, token, token_type=TokenType.refresh)


class TestAsymmetricKeys:
    def test_eddsa_tokens_round_trip(self) -> None:
        private, _ = ed25519_pem()
        settings = hs256_settings(jwt_algorithm="EdDSA", jwt_private_key=private)
        user_id = uuid.uuid4()

        token = issue_access_token(settings, subject=user_id).token

        assert decode_token(settings, token, token_type=TokenType.access).subject == str(user_id)

    def test_es256_tokens_round_trip(self) -> None:
        private, _ = p256_pem()
        settings = hs256_settings(jwt_algorithm="ES256", jwt_private_key=private)

        token = issue_access_token(settings, subject=uuid.uuid4()).token

        assert not _refused(token, settings)

    @pytest.mark.parametrize("pem", [ed25519_pem, p256_pem])
    def test_hs256_signed_with_the_public_key_is_refused(self, pem: object) -> None:
        assert callable(pem)
        private, public = pem()
        algorithm = "EdDSA" if pem is ed25519_pem else "ES256"
        settings = hs256_settings(jwt_algorithm=algorithm, jwt_private_key=private)

        forged = hmac_signed(claims(settings), public.encode())

        assert _refused(forged, settings)

    def test_a_token_signed_by_another_ed25519_key_is_refused(self) -> None:
        private, _ = ed25519_pem()
        settings = hs256_settings(jwt_algorithm="EdDSA", jwt_private_key=private)

        forged = sign(claims(settings), ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA")

        assert _refused(forged, settings)

    def test_the_hs256_secret_is_not_accepted_when_eddsa_is_configured(self) -> None:
        private, _ = ed25519_pem()
        settings = hs256_settings(jwt_algorithm="EdDSA", jwt_private_key=private)

        forged = sign(claims(settings), settings.jwt_secret.get_secret_value())

        assert _refused(forged, settings)


class TestKeyRotation:
    def test_tokens_of_the_previous_key_still_verify(self) -> None:
        old = hs256_settings(jwt_key_id="2026-01")
        new = hs256_settings(
            jwt_key_id="2026-02", jwt_previous_key_id="2026-01", jwt_previous_key=old.jwt_secret
        )
        token = issue_access_token(old, subject=uuid.uuid4()).token

        assert not _refused(token, new)

    def test_the_current_key_signs(self) -> None:
        new = hs256_settings(
            jwt_key_id="2026-02",
            jwt_previous_key_id="2026-01",
            jwt_previous_key=secrets.token_urlsafe(32),
        )

        token = issue_access_token(new, subject=uuid.uuid4()).token

        assert decode_token(new, token, token_type=TokenType.access).key_id == "2026-02"

    def test_tokens_of_a_retired_key_are_refused(self) -> None:
        old = hs256_settings(jwt_key_id="2026-01")
        token = issue_access_token(old, subject=uuid.uuid4()).token

        assert _refused(token, hs256_settings(jwt_key_id="2026-02"))

    def test_a_token_naming_the_previous_kid_but_signed_by_the_current_key_is_refused(
        self,
    ) -> None:
        new = hs256_settings(
            jwt_key_id="2026-02",
            jwt_previous_key_id="2026-01",
            jwt_previous_key=secrets.token_urlsafe(32),
        )

        forged = sign(claims(new), new.jwt_secret.get_secret_value(), kid="2026-01")

        assert _refused(forged, new)

    def test_rotating_from_hs256_to_eddsa_keeps_each_key_on_its_own_algorithm(self) -> None:
        old = hs256_settings()
        private, _ = ed25519_pem()
        new = hs256_settings(
            jwt_algorithm="EdDSA",
            jwt_private_key=private,
            jwt_key_id="k2",
            jwt_previous_key_id="k1",
            jwt_previous_algorithm="HS256",
            jwt_previous_key=old.jwt_secret,
        )
        old_token = issue_access_token(old, subject=uuid.uuid4()).token
        # HS256 under the new kid, with the old secret: the algorithm is pinned per kid.
        forged = sign(claims(new), old.jwt_secret.get_secret_value(), kid="k2")

        assert not _refused(old_token, new)
        assert not _refused(issue_access_token(new, subject=uuid.uuid4()).token, new)
        assert _refused(forged, new)


class TestPasswords:
    async def test_hashes_with_argon2id_at_the_minimum_cost_or_more(self) -> None:
        password_hash = await hash_password(SETTINGS, "correct horse")

        assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")

    async def test_verifies_the_right_password_only(self) -> None:
        password_hash = await hash_password(SETTINGS, "correct horse")

        assert await verify_password(SETTINGS, password_hash, "correct horse")
        assert not await verify_password(SETTINGS, password_hash, "correct horsE")

    async def test_no_hash_never_verifies(self) -> None:
        assert not await verify_password(SETTINGS, None, "anything")

    async def test_a_corrupt_hash_does_not_verify(self) -> None:
        assert not await verify_password(SETTINGS, "$argon2id$garbage", "anything")

    async def test_a_hash_made_with_weaker_parameters_needs_a_rehash(self) -> None:
        stronger = SETTINGS.model_copy(update={"password_hash_time_cost": 3})
        password_hash = await hash_password(SETTINGS, "correct horse")

        assert password_needs_rehash(stronger, password_hash)
        assert not password_needs_rehash(SETTINGS, password_hash)


class TestApiKeys:
    def test_a_new_key_starts_with_tg_and_its_public_prefix(self) -> None:
        fresh = new_api_key(SETTINGS)

        assert fresh.key.startswith(f"{fresh.prefix}_")
        assert fresh.prefix.startswith("tg_")
        assert api_key_prefix(fresh.key) == fresh.prefix
        assert fresh.key not in fresh.secret_hash

    def test_only_the_exact_key_matches_its_hash(self) -> None:
        fresh = new_api_key(SETTINGS)

        assert api_key_matches(SETTINGS, fresh.key, fresh.secret_hash)
        other_last = "B" if fresh.key.endswith("A") else "A"
        assert not api_key_matches(SETTINGS, fresh.key[:-1] + other_last, fresh.secret_hash)

    def test_the_hash_is_keyed_by_the_pepper(self) -> None:
        fresh = new_api_key(SETTINGS)
        other = hs256_settings(api_key_pepper=secrets.token_urlsafe(32))

        assert hash_api_key(other, fresh.key) != fresh.secret_hash

    @pytest.mark.parametrize(
        "key", ["tg_", "tg_0123456789ab", "tg_0123456789ab_short", "sk_" + "a" * 60, "tg_" * 400]
    )
    def test_malformed_keys_have_no_prefix(self, key: str) -> None:
        assert api_key_prefix(key) is None
