"""Read any CMS SignedData with asn1crypto into the fields verification needs (BER, odd choices).

The general reader: `smime_der` reads the usual strict-DER signature faster and
hands everything else here. Fields are read lazily, when verification asks,
so a broken part only fails the check that needs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from asn1crypto import cms
from asn1crypto import core as asn1_core

from bot.parse.smime.values import Refused, SignatureScheme, SignedFields, SignerFields, SignerId

# Limits on hostile input. Real messages stay far below each one.
# A signature carries its chain: 2–5 certificates. Thousands is an attack on our CPU.
MAX_CMS_CERTIFICATES = 64
# CRLs carried in the CMS (PKITS carries one or two).
MAX_CMS_CRLS = 16
# Only these signed attributes are read: parsing every attribute would choke
# on the malformed S/MIME capabilities some clients send.
READ_ATTRIBUTES = ("content_type", "message_digest", "signing_time")


def load_content_info(der: bytes) -> cms.ContentInfo:
    try:
        content_info = cms.ContentInfo.load(der)
        content_info["content_type"].native  # noqa: B018 - forces the lazy parse here
    except (ValueError, TypeError) as exc:
        raise Refused(f"not a CMS structure: {exc}") from exc
    return content_info


def load_signed_data(der: bytes) -> cms.SignedData:
    content_info = load_content_info(der)
    if content_info["content_type"].native != "signed_data":
        raise Refused(
            f"signature part holds {content_info['content_type'].native}, not signed-data"
        )
    return content_info["content"]


def encapsulated_content(signed_data: cms.SignedData) -> bytes | None:
    content = signed_data["encap_content_info"]["content"]
    if isinstance(content, asn1_core.Void):
        return None
    value = content.native
    return value if isinstance(value, bytes) else content.contents


class Asn1Signed(SignedFields):
    def __init__(self, signed_data: cms.SignedData) -> None:
        self._signed_data = signed_data

    def certificates(self) -> list[bytes]:
        choices = self._signed_data["certificates"]
        if isinstance(choices, asn1_core.Void):
            return []
        if len(choices) > MAX_CMS_CERTIFICATES:
            raise Refused(
                f"signature carries {len(choices)} certificates, over the limit of "
                f"{MAX_CMS_CERTIFICATES}"
            )
        # attribute certificates play no part in the chain
        return [c.chosen.dump() for c in choices if c.name == "certificate"]

    def crls(self) -> list[bytes]:
        choices = self._signed_data["crls"]
        if isinstance(choices, asn1_core.Void):
            return []
        return [c.chosen.dump() for c in list(choices)[:MAX_CMS_CRLS] if c.name == "crl"]

    def signers(self) -> Sequence[SignerFields]:
        return [Asn1Signer(si) for si in self._signed_data["signer_infos"]]

    def has_content(self) -> bool:
        return encapsulated_content(self._signed_data) is not None


class Asn1Signer(SignerFields):
    def __init__(self, signer_info: cms.SignerInfo) -> None:
        self._info = signer_info

    def digest_name(self) -> str:
        return str(self._info["digest_algorithm"]["algorithm"].native)

    def attributes(self) -> dict[str, object] | None:
        attrs = self._info["signed_attrs"]
        if isinstance(attrs, asn1_core.Void) or not len(attrs):
            return None
        found: dict[str, object] = {}
        for attr in attrs:
            name = attr["type"].native
            if name in READ_ATTRIBUTES:
                values = attr["values"]
                found[name] = values[0].native if len(values) == 1 else None
        return found

    def attributes_der(self) -> Iterator[bytes]:
        attrs = self._info["signed_attrs"]
        yield from signed_attribute_forms(b"\x31" + attrs.dump()[1:], attrs)

    def signer_id(self) -> SignerId:
        sid = self._info["sid"]
        if sid.name == "subject_key_identifier":
            return SignerId(key_identifier=sid.chosen.native)
        return SignerId(
            issuer=sid.chosen["issuer"].dump(), serial=sid.chosen["serial_number"].native
        )

    def scheme(self) -> SignatureScheme:
        algorithm = self._info["signature_algorithm"]
        try:
            name: str | None = algorithm.signature_algo
        except ValueError:
            name = None
        try:
            hash_name: str | None = algorithm.hash_algo
        except ValueError:
            hash_name = None
        return SignatureScheme(name, hash_name, algorithm["algorithm"].dotted)

    def pss_parameters(self) -> tuple[str, str, int]:
        params = self._info["signature_algorithm"]["parameters"]
        return (
            params["hash_algorithm"]["algorithm"].native,
            params["mask_gen_algorithm"]["parameters"]["algorithm"].native,
            params["salt_length"].native,
        )

    def signature(self) -> bytes:
        return bytes(self._info["signature"].native)


def signed_attribute_forms(original: bytes, attrs: cms.CMSAttributes) -> Iterator[bytes]:
    """`original` (the attributes as received, SET OF tagged), then their DER if it differs."""
    yield original
    try:
        reencoded = cms.CMSAttributes(list(attrs)).dump(force=True)
    except (ValueError, TypeError):
        return  # an attribute we cannot re-encode: only the original bytes can match
    if reencoded != original:
        yield reencoded  # the sender used BER; the signature is over DER
