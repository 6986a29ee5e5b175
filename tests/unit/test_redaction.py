from algohost.secrets.redaction import MASK, redact, redact_text


def test_a_secret_in_text_is_masked_everywhere_it_appears():
    assert redact_text("pw=hunter2; again hunter2", ["hunter2"]) == "pw=***; again ***"


def test_nested_json_values_and_keys_are_masked_without_touching_the_original():
    output = {"token": "abc-123", "items": ["x abc-123 y", 7, None, True],
              "abc-123": {"deep": ("abc-123",)}}
    masked = redact(output, ["abc-123"])
    assert masked == {"token": MASK, "items": ["x *** y", 7, None, True],
                      MASK: {"deep": [MASK]}}
    assert output["token"] == "abc-123"


def test_the_longest_secret_wins_where_one_contains_another():
    assert redact_text("key=abcdef", ["abc", "abcdef"]) == "key=***"
    assert redact_text("abc and abcdef", ["abcdef", "abc"]) == "*** and ***"


def test_empty_secrets_are_ignored_and_nothing_changes_without_secrets():
    assert redact_text("hello", ["", ""]) == "hello"
    value = {"a": [1, "b"]}
    assert redact(value, []) is value


def test_regex_characters_in_a_secret_are_taken_literally():
    assert redact_text("p4$$.w*rd and p4$$xw*rd", ["p4$$.w*rd"]) == "*** and p4$$xw*rd"


def test_a_secret_printed_as_json_is_masked_in_its_escaped_form():
    secret = 'quo"te\\back'
    assert redact_text('{"v": "quo\\"te\\\\back"}', [secret]) == '{"v": "***"}'


def test_each_line_of_a_multi_line_secret_is_masked_when_printed_alone():
    pem = "-----BEGIN KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    logs = "line 1\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n"
    assert "MIIBVQ" not in redact_text(logs, [pem])
    assert redact_text(f"all: {pem}", [pem]) == "all: ***"


def test_error_dicts_are_redacted_in_message_and_traceback():
    error = {"type": "ValueError", "message": "bad s3cr3t!", "traceback": "  s3cr3t!\n"}
    assert redact(error, ["s3cr3t!"]) == {"type": "ValueError", "message": "bad ***",
                                          "traceback": "  ***\n"}
