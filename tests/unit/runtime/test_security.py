"""The security building blocks without a node: bearer tokens, the header seal (also on
subscription records), request signing against the SDK's verifier, the key file formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from partition_processor import journal as j
from partition_processor.commands import Invoke, decode_envelope
from runtime.security.errors import SecuritySetupError
from runtime.security.headers import REDACTED, SEALED_PREFIX, HeaderSeal, load_or_create_key
from runtime.security.identity import (
    RequestSigner,
    generate_key_pair,
    load_signing_key,
    public_key_id,
)
from runtime.security.tokens import BearerTokens
from runtime.subscriptions.records import SourceRecord, map_record
from sdk._transport.identity import IdentityError, IdentityVerifier, parse_public_key
from tests.unit.runtime.test_subscription_mapping import ECHO, LIMITS, SINK

SECRETS = ("authorization", "x-api-key")


def test_tokens_accept_any_listed_bearer_token_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# comment\n\n  first  \nsecond\n")
    tokens = BearerTokens(path)
    assert tokens.accepts("Bearer first") and tokens.accepts("bearer second")
    assert tokens.accepts("Bearer  second ")
    for header in (None, "", "first", "Basic first", "Bearer", "Bearer firs", "Bearer first2"):
        assert not tokens.accepts(header), header
    path.write_text("third\n")  # rotated: read again on the next request
    assert tokens.accepts("Bearer third") and not tokens.accepts("Bearer first")


@pytest.mark.parametrize("content", ["", "# only a comment\n", "two words\n", "bad\x01\n"])
def test_unusable_token_files_are_refused_at_startup(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(content)
    with pytest.raises(SecuritySetupError, match="token"):
        BearerTokens(path)
    with pytest.raises(SecuritySetupError, match="cannot read"):
        BearerTokens(tmp_path / "missing")


def _seal(tmp_path: Path, name: str = "header.key") -> HeaderSeal:
    return HeaderSeal(SECRETS, load_or_create_key(tmp_path / name))


def test_the_seal_hides_secret_headers_and_opens_them_for_the_handler(tmp_path: Path) -> None:
    seal = _seal(tmp_path)
    assert (tmp_path / "header.key").stat().st_mode & 0o777 == 0o600
    headers = [("Authorization", "Bearer s3cret"), ("x-api-key", "k1"), ("trace", "t")]
    sealed = seal.seal(headers)
    assert [n for n, _ in sealed] == ["Authorization", "x-api-key", "trace"]
    assert sealed[2] == ("trace", "t")
    assert all(v.startswith(SEALED_PREFIX) and "s3cret" not in v for _, v in sealed[:2])
    assert seal.unseal(sealed) == headers
    assert seal.redact(sealed) == [("Authorization", REDACTED), ("x-api-key", REDACTED), sealed[2]]
    # The same key file again (a restart) opens what was sealed before.
    assert _seal(tmp_path).unseal(sealed) == headers
    # Another node's key cannot: the header is left out, never passed on as ciphertext.
    assert _seal(tmp_path, "other.key").unseal(sealed) == [("trace", "t")]
    # A client sending a sealed-looking value gets it sealed again, so it reaches the handler as
    # the client sent it, never decrypted with the node's key.
    smuggled = [("x-api-key", sealed[1][1])]
    assert seal.unseal(seal.seal(smuggled)) == smuggled


def test_calls_are_sealed_and_replayed_entries_opened(tmp_path: Path) -> None:
    seal = _seal(tmp_path)
    # (A value with a space: a sealed one is base64, which "k2" alone was found in by chance.)
    call = j.Call(j.CallTarget("S", "h"), b"1", headers=[("x-api-key", "key 2"), ("a", "b")])
    sealed = seal.seal_command(call)
    assert isinstance(sealed, j.Call) and "key 2" not in str(sealed.headers)
    assert sealed.headers[0][1].startswith(SEALED_PREFIX) and sealed.headers[1] == ("a", "b")
    assert seal.seal_command(j.Run("step")) == j.Run("step")
    entry = j.JournalEntry(j.Input(b"", sealed.headers), None)
    opened = seal.unseal_entry(entry)
    assert isinstance(opened.command, j.Input) and opened.command.headers == call.headers


def test_a_bad_header_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "header.key"
    path.write_text("not a key\n")
    with pytest.raises(SecuritySetupError, match="not a header key"):
        load_or_create_key(path)
    path.write_bytes(Fernet.generate_key())
    assert load_or_create_key(path) == path.read_bytes()


def test_subscription_records_have_their_secret_headers_sealed(tmp_path: Path) -> None:
    seal = _seal(tmp_path)
    record = SourceRecord("t", 0, 1, 5, None, b'"x"', [("Authorization", b"Bearer kafka-s3")])
    mapped = map_record("sub_1", ECHO, ECHO.handlers["show"], record, SINK, 4, 1000, LIMITS, seal)
    assert b"kafka-s3" not in mapped.payload
    invoke = decode_envelope(mapped.payload).command
    assert isinstance(invoke, Invoke)
    assert dict(seal.unseal(invoke.headers))["authorization"] == "Bearer kafka-s3"


def test_signed_metadata_passes_the_sdk_verifier_once(tmp_path: Path) -> None:
    public = generate_key_pair(tmp_path / "signing.pem")
    key = load_signing_key(tmp_path / "signing.pem")
    assert public_key_id(key) == public and public.startswith("publickeyv1_")
    parse_public_key(public)
    signer = RequestSigner(key)
    verifier = IdentityVerifier([public])
    metadata = signer.metadata("inv_1", "dp_1")
    claims = verifier.verify(metadata, "inv_1")
    assert claims["dep"] == "dp_1" and claims["sub"] == "inv_1"
    with pytest.raises(IdentityError, match="replayed"):
        verifier.verify(metadata, "inv_1")
    with pytest.raises(IdentityError, match="another call"):
        verifier.verify(signer.metadata("inv_2", "dp_1"), "inv_1")
    stranger = RequestSigner(Ed25519PrivateKey.generate())
    with pytest.raises(IdentityError, match="not signed by an identity key"):
        verifier.verify(stranger.metadata("inv_1", "dp_1"), "inv_1")


def test_signing_key_files_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SecuritySetupError, match="cannot read"):
        load_signing_key(tmp_path / "missing.pem")
    (tmp_path / "bad.pem").write_text("nope")
    with pytest.raises(SecuritySetupError, match="not an unencrypted PEM"):
        load_signing_key(tmp_path / "bad.pem")
    with pytest.raises(FileExistsError):
        generate_key_pair(tmp_path / "bad.pem")


def test_the_node_and_the_sdk_agree_on_the_token_format() -> None:
    """The sdk never imports the runtime, so both name the format: one test pins them."""
    from runtime.security import identity as node
    from sdk._transport import identity as endpoint

    for name in (
        "PUBLIC_KEY_PREFIX",
        "SCHEME_HEADER",
        "JWT_HEADER",
        "AUDIENCE",
        "DISCOVER_SUBJECT",
    ):
        assert getattr(node, name) == getattr(endpoint, name), name
    assert node.SCHEME == "v1"
