"""E-certificates (电子证照) on the hub: types from configuration, signing keys with their
lifecycle and storage, issuance and status changes, and what verifiers are given.

`signing/` holds the pure core (envelopes, trust bundles, status lists, the verifier);
this package feeds it from the store and the configuration:

- `types`: certificate types as declared, and the check of their fields;
- `keys`: the `KeyProvider` interface (software keys as encrypted PKCS#8; an HSM can
  implement it) and `KeyManager` (generate, rotate, compromise, one transaction each);
- `lifecycle`: issue, supersede, revoke, suspend, reinstate, each one transaction with
  its audit entry;
- `publisher`: the signed trust bundle and status list, cached, and the online verifier;
- `verification`: what a verifier presents (id, token, QR text), checked online;
- `library`: `CertificateLibrary`, all of the above built once for a hub node.
"""
