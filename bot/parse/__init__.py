"""Bytes in, typed results out: no storage, no network."""

import warnings

# cryptography warns (UserWarning, to stderr) when a certificate's name has a
# country code that is not two letters; such certificates come in hostile or
# broken mail and are judged by the chain checks like any other, so the
# warning is only noise in the operator's log.
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)
