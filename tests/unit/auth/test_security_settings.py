from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from app.core.config import SecuritySettings, Settings
from tests.unit.auth.tokens import ed25519_pem, p256_pem

STRONG = secrets.token_urlsafe(32)


class TestSecuritySettings:
    def test_a_short_hs256_secret_is_refused_in_every_environment(self) -> None:
        with pytest.raises(ValidationError, match="at least 32 bytes"):
            SecuritySettings(jwt_secret="short")

    def test_an_asymmetric_algorithm_needs_a_private_key(self) -> None:
        with pytest.raises(ValidationError, match="needs jwt_private_key"):
            SecuritySettings(jwt_algorithm="EdDSA")

    def test_a_key_of_another_type_is_refused(self) -> None:
        private, _ = p256_pem()

        with pytest.raises(ValidationError, match="not an EdDSA key"):
            SecuritySettings(jwt_algorithm="EdDSA", jwt_private_key=private)

    def test_a_key_that_is_not_pem_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="not a PEM key"):
            SecuritySettings(jwt_algorithm="ES256", jwt_private_key="not a key")

    def test_a_previous_key_id_needs_its_key_and_another_name(self) -> None:
        with pytest.raises(ValidationError, match="needs jwt_previous_key"):
            SecuritySettings(jwt_previous_key_id="k0")
        with pytest.raises(ValidationError, match="must differ"):
            SecuritySettings(jwt_previous_key_id="k1", jwt_previous_key=STRONG)

    def test_the_previous_asymmetric_key_may_be_its_public_half(self) -> None:
        private, _ = ed25519_pem()
        _, previous_public = ed25519_pem()

        settings = SecuritySettings(
            jwt_algorithm="EdDSA",
            jwt_private_key=private,
            jwt_previous_key_id="k0",
            jwt_previous_key=previous_public,
        )

        assert settings.previous_algorithm == "EdDSA"

    def test_argon2_cannot_be_configured_below_the_minimum(self) -> None:
        with pytest.raises(ValidationError):
            SecuritySettings(password_hash_memory_kib=4096)
        with pytest.raises(ValidationError):
            SecuritySettings(password_hash_time_cost=1)

    def test_settings_are_hashable_so_parsed_keys_can_be_cached(self) -> None:
        assert hash(SecuritySettings()) == hash(SecuritySettings())


class TestPlaceholdersOutsideLocal:
    def test_the_placeholder_api_key_pepper_is_refused_in_production(self) -> None:
        with pytest.raises(ValidationError, match="API_KEY_PEPPER must be set"):
            Settings(env="production", security={"jwt_secret": STRONG})

    def test_the_placeholder_jwt_secret_is_irrelevant_with_an_asymmetric_key(self) -> None:
        private, _ = ed25519_pem()

        settings = Settings(
            env="production",
            security={
                "jwt_algorithm": "EdDSA",
                "jwt_private_key": private,
                "api_key_pepper": STRONG,
            },
            webhooks={"secret_key": STRONG},
        )

        assert settings.security.jwt_algorithm == "EdDSA"

    def test_the_local_environment_accepts_the_placeholders(self) -> None:
        assert Settings(env="local").security.api_key_pepper.get_secret_value()
