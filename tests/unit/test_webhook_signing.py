"""Signatures are Standard Webhooks ones: the library's own verifier accepts them."""

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from algohost.store.webhooks import SECRET_PREFIX, new_secret
from algohost.webhooks.signing import signature_headers

BODY = json.dumps({"id": "j_1", "status": "succeeded"})


def test_new_secret_is_whsec_with_32_random_bytes():
    secret = new_secret()
    assert secret.startswith(SECRET_PREFIX)
    assert len(base64.b64decode(secret.removeprefix(SECRET_PREFIX))) == 32
    assert new_secret() != secret


def test_signature_verifies_with_the_standardwebhooks_verifier():
    secret = new_secret()
    headers = signature_headers(secret, "msg_1", time.time(), BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_headers_carry_the_id_and_a_whole_second_timestamp():
    headers = signature_headers(new_secret(), "msg_abc", 1_700_000_000.9, BODY)
    assert headers["webhook-id"] == "msg_abc"
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"].startswith("v1,")


def test_another_key_does_not_verify():
    headers = signature_headers(new_secret(), "msg_1", time.time(), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_a_changed_body_does_not_verify():
    secret = new_secret()
    headers = signature_headers(secret, "msg_1", time.time(), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("succeeded", "failed"), headers)


def test_retries_keep_the_id_but_sign_their_own_timestamp():
    secret = new_secret()
    first = signature_headers(secret, "msg_1", time.time() - 60, BODY)
    retry = signature_headers(secret, "msg_1", time.time(), BODY)
    assert first["webhook-id"] == retry["webhook-id"]
    assert first["webhook-signature"] != retry["webhook-signature"]
    Webhook(secret).verify(BODY, retry)
