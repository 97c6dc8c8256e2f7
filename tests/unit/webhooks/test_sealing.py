"""Signing secrets at rest: sealed under the settings' key, opened by it or by the previous one."""

from __future__ import annotations

import pytest

from app.core.config import WebhookSettings
from app.webhooks.sealing import UnsealableSecret, is_sealed, key_id_of, seal, unseal
from app.webhooks.signing import new_secret

KEY_A = "a" * 40
KEY_B = "b" * 40


def _settings(**fields: object) -> WebhookSettings:
    return WebhookSettings.model_validate({"secret_key": KEY_A, "secret_key_id": "k1", **fields})


class TestSeal:
    def test_a_sealed_secret_holds_no_trace_of_it_and_opens_again(self) -> None:
        secret = new_secret()
        settings = _settings()

        stored = seal(secret, settings)

        assert is_sealed(stored)
        assert key_id_of(stored) == "k1"
        assert secret not in stored
        assert secret.removeprefix("whsec_") not in stored
        assert len(stored) <= 128  # the column it is stored in
        assert unseal(stored, settings) == secret

    def test_the_same_secret_seals_differently_each_time(self) -> None:
        secret = new_secret()

        assert seal(secret, _settings()) != seal(secret, _settings())

    def test_the_previous_key_still_opens_what_it_sealed(self) -> None:
        secret = new_secret()
        stored = seal(secret, _settings())
        rotated = _settings(
            secret_key=KEY_B,
            secret_key_id="k2",
            previous_secret_key=KEY_A,
            previous_secret_key_id="k1",
        )

        assert unseal(stored, rotated) == secret
        assert key_id_of(seal(secret, rotated)) == "k2"

    def test_no_configured_key_no_secret(self) -> None:
        stored = seal(new_secret(), _settings())

        with pytest.raises(UnsealableSecret, match="no key 'k1'"):
            unseal(stored, _settings(secret_key=KEY_B, secret_key_id="k2"))
        with pytest.raises(UnsealableSecret, match="does not open"):
            unseal(stored, _settings(secret_key=KEY_B))  # the same id, another key

    def test_a_tampered_value_is_refused(self) -> None:
        stored = seal(new_secret(), _settings())
        version, key_id, nonce, body = stored.split(".")
        flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]

        with pytest.raises(UnsealableSecret):
            unseal(".".join((version, key_id, nonce, flipped)), _settings())

    def test_a_secret_stored_before_sealing_reads_as_it_is(self) -> None:
        secret = new_secret()

        assert not is_sealed(secret)
        assert unseal(secret, _settings()) == secret
