"""S/MIME: find the signed or enveloped entity, verify it, judge the signer."""
