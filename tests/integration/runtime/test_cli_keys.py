"""``cairn keys generate``: a key pair on disk, the public key printed (or as JSON), and an
existing key never overwritten."""

from __future__ import annotations

import contextlib
import io
import json
import stat
from pathlib import Path

import pytest

from runtime import cli
from runtime.security.identity import load_signing_key, public_key_id


def _main(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(list(argv))
    return out.getvalue()


def test_generate_writes_a_key_pair_and_prints_the_public_key(tmp_path: Path) -> None:
    private = tmp_path / "signing.pem"
    shown = _main("keys", "generate", "--out", str(private))
    public = (tmp_path / "signing.pem.pub").read_text().strip()
    assert public.startswith("publickeyv1_")
    assert f"public key:  {public}" in shown.splitlines()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    # A usable --request-signing-key-file, whose public key is the one printed.
    assert public_key_id(load_signing_key(private)) == public

    as_json = json.loads(_main("keys", "generate", "--out", str(tmp_path / "b.pem"), "--json"))
    assert as_json == {
        "private_key_file": str(tmp_path / "b.pem"),
        "public_key": (tmp_path / "b.pem.pub").read_text().strip(),
    }
    with pytest.raises(SystemExit, match="exists; not overwriting"):
        _main("keys", "generate", "--out", str(private))
    assert (tmp_path / "signing.pem.pub").read_text().strip() == public
