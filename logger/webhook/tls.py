"""The webhook's serving certificate, read from mounted files and reloaded when they change.

Kubernetes updates a mounted Secret by swapping a symbolic link, cert-manager renews certificates before they
expire: :meth:`ReloadingCertificate.check` (called periodically) compares the files' modification times and sizes
and, on a change, loads the new pair into the same :class:`ssl.SSLContext`. New TLS handshakes then present the
new certificate (OpenSSL copies the context's certificate into each new connection); open connections keep theirs.
A pair that fails to load (a half-written rotation, a key that does not match) is logged and retried at the next
check while the previous certificate keeps serving.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from cryptography import x509

log = logging.getLogger(__name__)


class ReloadingCertificate:
    """A server-side :class:`ssl.SSLContext` (TLS 1.2+) serving ``cert_file`` / ``key_file``.

    Args:
        cert_file: PEM certificate chain.
        key_file: PEM private key.

    Raises:
        OSError, ssl.SSLError: the initial pair cannot be loaded (the process should not start).
    """

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._files_stamp()
        self.context.load_cert_chain(cert_file, key_file)
        self.not_after = self._read_not_after()

    def _files_stamp(self) -> tuple[int, int, int, int]:
        cert, key = self.cert_file.stat(), self.key_file.stat()
        return (cert.st_mtime_ns, cert.st_size, key.st_mtime_ns, key.st_size)

    def _read_not_after(self) -> float:
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        return cert.not_valid_after_utc.timestamp()

    def check(self) -> bool | None:
        """Reload the pair if the files changed.

        Returns:
            ``None`` when nothing changed, ``True`` after a reload, ``False`` when the changed files failed to load
            (the previous certificate stays in use; the next call tries again).
        """
        try:
            stamp = self._files_stamp()
        except OSError as exc:
            log.warning("certificate files unreadable, keeping the current one: %s", exc)
            return False
        if stamp == self._stamp:
            return None
        try:
            # A scratch context first: a failed load into the live one could leave it with a key that no longer
            # matches its certificate.
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.cert_file, self.key_file)
            self.context.load_cert_chain(self.cert_file, self.key_file)
            not_after = self._read_not_after()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("new certificate does not load, keeping the current one: %s", exc)
            return False
        self._stamp = stamp
        self.not_after = not_after
        log.info("serving certificate reloaded from %s (notAfter %.0f)", self.cert_file, not_after)
        return True
