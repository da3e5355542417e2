"""Bytes in, typed results out: no storage, no network."""

import warnings

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

# What loading a certificate from outside can raise: ValueError for broken
# DER, and InvalidVersion, which is not a ValueError, for a version field
# other than v1 to v3 (found by the certificate-list fuzz test).
CERTIFICATE_ERRORS = (ValueError, x509.InvalidVersion)

# cryptography warns (UserWarning, to stderr) when a certificate's name has a
# country code that is not two letters; such certificates come in hostile or
# broken mail and are judged by the chain checks like any other, so the
# warning is only noise in the operator's log.
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)
# Likewise for a serial number that is zero or negative: a mis-issuance CAs
# report in their lists, and one that must not stop a list or a signature check.
warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive",
                        category=CryptographyDeprecationWarning)
