"""Telephony providers behind one interface (base.py): Twilio for real calls, a simulator for demos and tests."""
