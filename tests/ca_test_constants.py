"""The CA test token's label and PINs (test-only secrets), importable under a unique name."""

SO_PIN = "so-pin-123456"
USER_PIN = "user-pin-654321"
CA_TOKEN = "kyso-ca-test"
