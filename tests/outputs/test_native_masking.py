"""The native masker (``native/src/mask.rs``) against the reference (``redact.mask_text``):
the same rules from the same table must give the same string, byte for byte, on anything a
sender writes. RE2 and the ``regex`` crate differ on ``\\b``, ``\\s`` and friends outside ASCII,
and Python's ``isdigit``/``isalpha``/``split`` have their own Unicode; these strings are where
a translation would slip."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otel_processor.outputs import redact
from otel_processor.outputs.redact import NATIVE_MASKER, SECRETS_TABLE, Redactor, mask_text

native = pytest.mark.skipif(NATIVE_MASKER is None, reason="the native core is not built (or NHI_PURE_PYTHON)")

PIECES = ["eyJ", "eyJhbGciOiJI", ".", "ghp_", "a" * 20, "A1b2C3d4", "sk-", "password", "passwd", "secret", "=", ":",
          " ", "  ", "\t", "Bearer", "bearer ", "Basic", "token", "Token ", "://", "u", "@", "x", "\n", "'", '"', "\\",
          "\\\"", "\\u0022", "%3D", "%3a", "--password", "IDENTIFIED BY", "'pw1'", "code", "Code", "200", "0.AXoA1b2",
          "hashed_", "hash.", '"key":', "key", "api_key", "authorization", "Authorization: ", "SSWS ", "Digest ",
          "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "AKIA" + "A" * 16, "B" * 40,
          "sha256:", "[masked]", ",", "}", "{", "&", ";", "é", "ÉCOLE", "٣٣٣", "²²²", "½", "\u212a", "\u017f",
          "\u0130", "\u00a0", "\u2003", "\u3000", "\x0b", "\x0c", "\x1c", "\x1f", "\u200b", "😀", "日本"]
texts = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=16).map("".join)


def _examples() -> list[str]:
    with open(SECRETS_TABLE, encoding="utf-8") as fh:
        table = yaml.safe_load(fh)
    return [fmt["example"] for fmt in table["token_formats"] if fmt.get("example")]


@native
@settings(max_examples=2500, deadline=None)
@given(texts)
@example("password=ab\u00a0cd")             # NBSP: white space to the regex crate, not to RE2
@example("code=\u00bd\u00bd\u00bd\u00bd\u00bd\u00bd\u00bd\u00bd")  # numeric to Rust, not a digit to Python
@example("code=\u0663\u0663\u0663\u0663\u0663\u0663\u0663\u0663")  # Arabic-Indic digits: str.isdigit
@example("Authorization: To\u212aen abcdefgh")  # the Kelvin sign folds to k in both
@example('{"key": "password=hunter2"}')
@example("\xe9ghp_" + "a" * 30)             # a word boundary after a non-ASCII letter (ASCII \b)
def test_native_and_reference_mask_alike(text):
    assert NATIVE_MASKER.mask(text) == mask_text(text), text


@native
@pytest.mark.parametrize("text", _examples())
def test_every_example_of_the_table_is_masked_alike(text):
    for around in (text, f"x {text} y", f'{{"k":"{text}"}}', f"url?api_key={text}&z=1"):
        out = NATIVE_MASKER.mask(around)
        assert out == mask_text(around) and text not in out, around


@native
@pytest.mark.parametrize("text", ["eyJ" * 350_000, "password=" * 120_000, "://a:" * 200_000, "Bearer " * 150_000,
                                  "token=" + "a1" * 500_000, "Authorization: Bearer " * 45_000,
                                  "-----BEGIN RSA PRIVATE KEY-----" + "A" * 1_000_000])
def test_a_megabyte_of_hostile_text_masks_alike(text):
    assert NATIVE_MASKER.mask(text) == mask_text(text)


@native
def test_strings_utf8_cannot_hold_are_left_to_the_reference():
    """A protobuf string is UTF-8, so none arrives from the wire; a caller's str with a lone
    surrogate gets the reference's answer, which is RE2's refusal."""
    text = "password=\ud800abc"
    with pytest.raises(UnicodeEncodeError):
        mask_text(text)
    with pytest.raises(UnicodeEncodeError):
        NATIVE_MASKER.mask(text)


@native
def test_unchanged_text_comes_back_as_the_same_object():
    text = "GET /api/v1/orders/{id} from a client with a token_count of 3"
    assert NATIVE_MASKER.mask(text) is text


@native
def test_the_redactor_masks_with_the_native_masker(monkeypatch):
    calls = []
    monkeypatch.setattr(redact, "mask_text", lambda *a: calls.append(a) or a[0])
    assert Redactor().text("password=hunter22") == "password=[masked]"
    assert calls == [], "the native masker answered, not the reference"


def test_the_fuzz_targets_table_is_the_secrets_table():
    """``native/fuzz/masking_table.txt`` is what the mask fuzz target and ``cargo test`` build
    the real masker from: regenerate it when the table changes (native/README.md)."""
    from paths import ROOT

    with open(f"{ROOT}/native/fuzz/masking_table.txt", encoding="utf-8") as fh:
        assert fh.read().splitlines() == redact.native_table_lines()


def test_events_mask_with_the_masker_of_the_build(monkeypatch):
    """Convergence events carry record values (targets, actions, reasons); they are masked by the
    native masker when it is built, by the reference otherwise, with the same result."""
    text = "GET /login?password=hunter22&next=/"
    expected = mask_text(text)
    calls = []
    monkeypatch.setattr(redact, "mask_text", lambda *a: calls.append(a) or expected)
    assert redact.mask_secrets(text) == expected == "GET /login?password=[masked]&next=/"
    assert bool(calls) == (NATIVE_MASKER is None)
