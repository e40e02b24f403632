"""The certificate authority: hierarchy, profiles, issuance, revocation, storage."""
