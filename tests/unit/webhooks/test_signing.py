"""Our signatures, checked by an independent Standard Webhooks implementation (`standardwebhooks`)."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.webhooks.signing import new_secret, signature_header

BODY = b'{"type":"task.succeeded","timestamp":"2026-11-23T16:00:00Z","data":{"id":"x"}}'


def headers(signature: str, *, message_id: str = "msg-1", timestamp: int) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


class TestSecrets:
    def test_are_whsec_and_the_base64_of_at_least_24_random_bytes(self) -> None:
        secret = new_secret()

        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
        assert new_secret() != secret


class TestSignatures:
    def test_verify_with_the_standard_webhooks_library(self) -> None:
        secret, now = new_secret(), int(time.time())

        signature = signature_header([secret], message_id="msg-1", timestamp=now, body=BODY)

        assert signature.startswith("v1,")
        assert Webhook(secret).verify(BODY, headers(signature, timestamp=now))["data"] == {
            "id": "x"
        }

    def test_during_a_rotation_either_secret_verifies(self) -> None:
        new, old, now = new_secret(), new_secret(), int(time.time())

        signature = signature_header([new, old], message_id="msg-1", timestamp=now, body=BODY)

        assert len(signature.split(" ")) == 2
        Webhook(new).verify(BODY, headers(signature, timestamp=now))
        Webhook(old).verify(BODY, headers(signature, timestamp=now))
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(BODY, headers(signature, timestamp=now))

    @pytest.mark.parametrize(
        ("body", "message_id", "shift_s"),
        [
            (BODY.replace(b"succeeded", b"failed"), "msg-1", 0),
            (BODY, "msg-2", 0),
            (BODY, "msg-1", 1),
        ],
    )
    def test_a_changed_body_id_or_timestamp_does_not_verify(
        self, body: bytes, message_id: str, shift_s: int
    ) -> None:
        secret, now = new_secret(), int(time.time())
        signature = signature_header([secret], message_id="msg-1", timestamp=now, body=BODY)

        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(
                body, headers(signature, message_id=message_id, timestamp=now + shift_s)
            )
