"""Email and SMS for the side-effecting drivers: sending (`smtp`, `twilio_sms`), header checks
(`addresses`), what was already sent (`ledger`: sent_effects and the outbox) and reading the
outbox (`outbox`)."""
