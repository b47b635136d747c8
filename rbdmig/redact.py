"""Secrets out of text that may be shown: cephx keys, passwords, tokens."""

import re

from oslo_utils import strutils

_SECRET = '***'
# What oslo's mask_password does not know: Ceph's own ways of writing a
# key.  A cephx secret is 28 bytes in base64, starting "AQ" (its type).
_PATTERNS = (
    # "key = AQ...", a keyring's line; "--key AQ...", an argv
    re.compile(r'(\bkey\s*[=:]\s*|--key[=\s]\s*)([^\s\'",}]+)',
               re.IGNORECASE),
    # a bare key anywhere
    re.compile(r'()(\bAQ[A-Za-z0-9+/]{36,38}==)'),
    # "scheme://user:password@host"
    re.compile(r'(://[^:/@\s]*:)([^@\s]+)(?=@)'),
)


def mask(text):
    """Return ``text`` with every secret rbdmig knows of replaced by ***.

    oslo's ``strutils.mask_password`` (``password=``, ``secret``,
    ``token``... in key/value, JSON and XML forms), plus cephx keys
    (keyring lines, ``--key`` arguments, bare keys) and URL passwords.
    Anything that is not a string is turned into one first.
    """
    text = strutils.mask_password(str(text), secret=_SECRET)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + _SECRET, text)
    return text
