"""Token labels and PINs shared by the hsm tests (test-only secrets)."""

SO_PIN = "so-pin-8431"
USER_PIN = "user-pin-5527"
MAIN_LABEL = "kyso-test"
DOOMED_LABEL = "kyso-doomed"  # destroyed by the unavailability test
PIN_LABEL = "kyso-pin"  # only ever logged into with a wrong PIN
