"""PDF signing and verification, RFC 3161 timestamps; see issue 5."""
