"""HTTP handlers: thin adapters from requests to the domain services and back to the envelope."""
