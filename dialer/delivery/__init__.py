"""Partner webhook delivery (the layer between api and services, DESIGN.md "Architecture"): the relay that
turns outbox events into messages (relay.py), their Standard Webhooks signatures (signing.py) and the
senders that lease messages and deliver them (sender.py), in the API process and in every worker."""
