from main import apply


def test_psycopg2_is_compiled_against_the_images_libpq():
    result = apply(None)
    assert result["libpq_version"] >= 100000  # libpq 10 or newer
    assert result["libpq"].split(".")[0] == str(result["libpq_version"] // 10000)
