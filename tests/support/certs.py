"""A private PKI for TLS tests, made with the ``openssl`` command line: a CA, a server
certificate for ``127.0.0.1``/``localhost``, and client certificates (plain and with an
encrypted key). Nothing is fetched; keys are fresh per call.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")
KEY_PASSWORD = "client-key-pass-7f3a"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path  # the same key, encrypted with KEY_PASSWORD
    client_bundle: Path  # certificate and (plain) key in one file
    other_cert: Path  # a client certificate whose key is not client_key


def _run(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def _signed(cwd: Path, name: str, subject: str, ext: str) -> None:
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", f"{name}.key", cwd=cwd)  # fmt: skip
    _run("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext)
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
         cwd=cwd)  # fmt: skip


def make_pki(directory: Path) -> Pki:
    """Write a fresh PKI into ``directory`` (needs the ``openssl`` binary)."""
    if OPENSSL is None:
        raise RuntimeError("openssl is not installed")
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=iot-bridge test CA",
         cwd=d)  # fmt: skip
    _signed(d, "server", "/CN=localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")  # fmt: skip
    _signed(d, "client", "/CN=iot-bridge-client", "extendedKeyUsage=clientAuth\n")
    _signed(d, "other", "/CN=someone-else", "extendedKeyUsage=clientAuth\n")
    _run("pkey", "-in", "client.key", "-aes-256-cbc", "-passout", f"pass:{KEY_PASSWORD}",
         "-out", "client-encrypted.key", cwd=d)  # fmt: skip
    bundle = d / "client-bundle.pem"
    bundle.write_bytes((d / "client.crt").read_bytes() + (d / "client.key").read_bytes())
    return Pki(
        ca=d / "ca.crt",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
        client_key_encrypted=d / "client-encrypted.key",
        client_bundle=bundle,
        other_cert=d / "other.crt",
    )
