"""The upload page and its JSON API (standard library HTTP server; imports only ``inference``)."""
