"""What every request goes through before its events reach the store: body limits, auth, rate limits."""
