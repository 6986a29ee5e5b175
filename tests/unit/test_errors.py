import pytest

from algohost import errors


def all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def test_every_error_has_a_status_and_a_unique_code():
    codes = {}
    for cls in [errors.AlgohostError, *all_subclasses(errors.AlgohostError)]:
        assert 400 <= cls.http_status < 600
        assert cls.code not in codes, f"{cls.__name__} reuses {codes.get(cls.code)}'s code"
        codes[cls.code] = cls.__name__


@pytest.mark.parametrize("cls, status", [
    (errors.MalformedJSON, 400), (errors.InvalidManifest, 400), (errors.Unauthorized, 401),
    (errors.Forbidden, 403), (errors.JobNotFound, 404), (errors.JobNotCancelable, 409),
    (errors.PayloadTooLarge, 413), (errors.SecretsUnavailable, 503)])
def test_status_follows_the_family(cls, status):
    assert cls.http_status == status


def test_to_dict_carries_code_message_and_details():
    exc = errors.InvalidManifest("unknown key 'x'", key="x")
    assert exc.to_dict() == {"code": "invalid_manifest", "message": "unknown key 'x'",
                             "details": {"key": "x"}}
